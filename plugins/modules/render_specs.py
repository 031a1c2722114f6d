#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the app catalog (or the edge: ingress, outside balancer, CoreDNS) to files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: render_specs
short_description: Render kubeflat app specs and Envoy configs as files, validated by the real checkers
description:
  - Builds Kubernetes manifests and Envoy bootstraps as data (plugins/plugin_utils/kubeflat_catalog.py,
    kubeflat_specs.py, kubeflat_edge.py, kubeflat_coredns.py and kubeflat_envoy.py) for the whole catalog in one call and writes them under O(dest).
  - Runs as an action plugin in the controller process (no module is shipped to a host, no
    Python is started); O(dest) is a path on the controller and the task must run with
    C(delegate_to=localhost) (a local connection), as the kubeflat roles do.
  - Output is deterministic; only files whose content differs are written, so a re-run with the
    same inputs reports C(changed=false). Files this module wrote earlier for the same O(part)
    that are no longer rendered (an app was removed) are deleted.
  - Every rendered file is validated B(before anything is written) with the real checkers when
    their paths are given (C(kubernetes-validate --strict) for manifests, C(envoy --mode validate)
    for Envoy configs), unless those exact bytes already passed the same checker (same version,
    same flags) and are on disk unchanged; that is kept in a validation record
    C(.kubeflat-<part>.validated.json) beside the rendered files (path -> sha256 per checker). A
    new, changed, edited-on-disk or unrecorded file is always validated again. A failure reports
    the checker's message and leaves O(dest) untouched.
  - When O(kubernetes_validate) is the console script of the controller's own Python, its package
    is used in-process (the same schemas, loader and validator as its CLI); a document with no
    schema is refused (the CLI would only warn). Otherwise the CLI runs, one batch per CPU.
    Identical Envoy configs are validated once; Envoy runs one process per CPU at a time.
  - Supports check mode (validates, writes nothing) and diff mode (one diff per file).
options:
  dest:
    description: Render directory (C(kubeflat_render_dir)); files go to C(specs/<namespace>/) and C(envoy/).
    type: path
    required: true
  part:
    description:
      - C(apps) renders the catalog (Deployments, headless Services, sidecar ConfigMaps, sidecar configs).
      - C(edge) renders the Envoy ingress DaemonSet, the outside balancer config and CoreDNS.
    type: str
    choices: [apps, edge]
    default: apps
  apps:
    description: The app catalog (C(app_specs_apps)); format in docs/specs.md.
    type: list
    elements: dict
    default: []
  apps_var:
    description:
      - Name of the variable that holds the catalog, instead of O(apps). The action reads it
        from the task's variables and templates it itself, so Ansible does not template a
        large list into the task arguments (and send it back with the result) on every run.
      - A value with nothing to template (no Jinja in any string), or a string that is just
        C({{ other }}) or C({{ other | default(<literal>) }}) leading to one, is used as it is;
        anything else is templated as Ansible would template O(apps).
    type: str
    default: ""
  apps_dir:
    description:
      - The catalog kept as files (C(app_specs_apps_dir)) - an absolute path to a directory of
        YAML files (C(*.yml), C(*.yaml) below it, sorted, hidden names skipped), each one app
        or a list of apps. Their apps come after those of O(apps) or O(apps_var).
      - The render memo is keyed on the files' bytes, so a run in which nothing changed hashes
        them and parses nothing. An error about an app names the file that defines it.
    type: str
    default: ""
  settings:
    description: Catalog-wide settings (C(app_specs_*) without the prefix).
    type: dict
    default: {}
  ingress:
    description: Ingress settings (C(envoy_ingress_*) without the prefix); used with O(part=edge).
    type: dict
    default: {}
  coredns:
    description: CoreDNS settings (C(envoy_ingress_coredns_*) without the prefix); null leaves CoreDNS out.
    type: dict
  model:
    description: The cluster model (fact C(kubeflat_model)).
    type: dict
    required: true
  kubernetes_validate:
    description: Path of C(kubernetes-validate); empty skips manifest validation.
    type: str
    default: ""
  kube_version:
    description: Kubernetes version whose schemas manifests are validated against.
    type: str
    default: 1.37.0
  envoy:
    description: Path of the C(envoy) binary used for C(--mode validate); empty skips it.
    type: str
    default: ""
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Render and validate the app catalog
  kubeflat.cluster.render_specs:
    dest: "{{ kubeflat_render_dir }}"
    part: apps
    apps_var: app_specs_apps  # or apps: "{{ app_specs_apps }}"
    settings: {namespace: shop}
    model: "{{ kubeflat_model }}"
    kubernetes_validate: "{{ ansible_playbook_python | dirname }}/kubernetes-validate"
    envoy: "{{ ansible_playbook_python | dirname }}/envoy"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
files:
  description: Every file rendered by this part, relative to O(dest).
  returned: always
  type: list
  elements: str
  sample: [specs/shop/web.yaml, envoy/sidecars/shop/web.yaml]
changed_files:
  description: Files that were (or in check mode would be) created or rewritten.
  returned: always
  type: list
  elements: str
removed_files:
  description: Files of an earlier render of this part that are no longer rendered (deleted).
  returned: always
  type: list
  elements: str
manifests:
  description: Absolute paths of the Kubernetes manifests, in apply order (namespaces first).
  returned: always
  type: list
  elements: str
envoy_configs:
  description: Absolute paths of the rendered Envoy configs.
  returned: always
  type: list
  elements: str
validated:
  description: How many files each checker validated in this run (new, changed, edited on disk,
    or not recorded as passed by this checker); C(0) for a checker that is not configured.
  returned: always
  type: dict
  sample: {manifests: 3, envoy: 2}
validated_before:
  description: How many files were not validated again because the validation record shows that
    these exact bytes passed the same checker before (and they are unchanged on disk).
  returned: always
  type: dict
  sample: {manifests: 1010, envoy: 999}
"""

# The code is the action plugin plugins/action/render_specs.py: it renders, validates
# and writes in the controller process (as ansible.builtin.template does), so no module is
# shipped and no Python is started for it. This file documents it.
