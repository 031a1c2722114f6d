#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the app catalog (or the edge: ingress, outside balancer, CoreDNS) to files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeflat_render_specs
short_description: Render kubeflat app specs and Envoy configs as files, validated by the real checkers
description:
  - Builds Kubernetes manifests and Envoy bootstraps as data (plugins/module_utils/kubeflat_specs.py
    and kubeflat_envoy.py) for the whole catalog in one call and writes them under O(dest).
  - Output is deterministic; only files whose content differs are written, so a re-run with the
    same inputs reports C(changed=false). Files this module wrote earlier for the same O(part)
    that are no longer rendered (an app was removed) are deleted.
  - New or changed files are validated B(before anything is written) with the real checkers when
    their paths are given (C(kubernetes-validate --strict) for manifests, C(envoy --mode validate)
    for Envoy configs); a failure reports the checker's message and leaves O(dest) untouched.
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
author: kubeflat contributors
"""

EXAMPLES = r"""
- name: Render and validate the app catalog
  kubeflat_render_specs:
    dest: "{{ kubeflat_render_dir }}"
    part: apps
    apps: "{{ app_specs_apps }}"
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
  description: How many changed files each checker validated.
  returned: always
  type: dict
  sample: {manifests: 3, envoy: 2}
"""

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kubeflat_specs import (
    EnvoyError, SpecError, manifest_order, render_apps, render_edge)


def _read(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _write(path, text):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kubeflat-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def _check_binary(module, path, what, var):
    if not path:
        return
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        module.fail_json(msg="%s not found at %s: run `make setup` (it is installed in the "
                             "project .venv) or set %s: false to skip this validation"
                             % (what, path, var))


def _validate(module, changed, files):
    """Run the real checkers on the changed files (copies in a temp dir); fail on error."""
    params = module.params
    manifests = [p for p in changed if p.startswith("specs/")]
    configs = [p for p in changed if p.startswith("envoy/")]
    done = {"manifests": 0, "envoy": 0}
    if not (manifests and params["kubernetes_validate"]) and \
            not (configs and params["envoy"]):
        return done
    tmp = tempfile.mkdtemp(prefix="kubeflat-validate-")
    try:
        for rel in changed:
            target = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(files[rel])
        workers = max(1, min(8, os.cpu_count() or 1))
        if manifests and params["kubernetes_validate"]:
            _check_binary(module, params["kubernetes_validate"], "kubernetes-validate",
                          "app_specs_validate_manifests")
            # jsonschema validation is CPU-bound (~20 ms per document): one process per CPU.
            chunks = [manifests[i::workers] for i in range(workers) if manifests[i::workers]]

            def check_manifests(chunk):
                return module.run_command(
                    [params["kubernetes_validate"], "-k", params["kube_version"], "--strict",
                     "--quiet"] + chunk, cwd=tmp)

            with ThreadPoolExecutor(max_workers=workers) as pool:
                for rc, out, err in pool.map(check_manifests, chunks):
                    if rc != 0:
                        module.fail_json(msg="kubernetes-validate --strict refused the rendered "
                                             "manifests; nothing was written:\n%s"
                                             % (out + err).strip(), rc=rc)
            done["manifests"] = len(manifests)
        if configs and params["envoy"]:
            _check_binary(module, params["envoy"], "envoy", "app_specs_validate_envoy")

            def check(rel):
                return rel, module.run_command(
                    [params["envoy"], "--mode", "validate", "--disable-hot-restart",
                     "--log-level", "error", "--config-path", rel], cwd=tmp)

            with ThreadPoolExecutor(max_workers=workers) as pool:
                for rel, (rc, out, err) in pool.map(check, configs):
                    if rc != 0:
                        module.fail_json(msg="envoy --mode validate refused %s; nothing was "
                                             "written:\n%s" % (rel, (out + err).strip()), rc=rc)
            done["envoy"] = len(configs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            part=dict(type="str", choices=["apps", "edge"], default="apps"),
            apps=dict(type="list", elements="dict", default=[]),
            settings=dict(type="dict", default={}),
            ingress=dict(type="dict", default={}),
            coredns=dict(type="dict"),
            model=dict(type="dict", required=True),
            kubernetes_validate=dict(type="str", default=""),
            kube_version=dict(type="str", default="1.37.0"),
            envoy=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params = module.params
    dest = params["dest"]
    try:
        if params["part"] == "apps":
            files = render_apps(params["apps"], params["settings"], params["model"])
        else:
            files = render_edge(params["apps"], params["settings"], params["ingress"],
                                params["coredns"], params["model"])
    except (SpecError, EnvoyError) as exc:
        module.fail_json(msg="kubeflat app specs are invalid: %s" % exc, variable=exc.var,
                         value=str(exc.value))

    index_path = os.path.join(dest, ".kubeflat-%s.json" % params["part"])
    previous = []
    index_text = _read(index_path)
    if index_text:
        try:
            previous = [p for p in json.loads(index_text) if isinstance(p, str)]
        except ValueError:
            previous = []
    changed = []
    diffs = []
    for rel in sorted(files):
        before = _read(os.path.join(dest, rel))
        if before != files[rel]:
            changed.append(rel)
            diffs.append({"before_header": rel, "after_header": rel,
                          "before": before or "", "after": files[rel]})
    removed = []
    for rel in sorted(set(previous) - set(files)):
        path = os.path.join(dest, rel)
        # Only plain files inside dest that an earlier run of this part wrote.
        if os.path.normpath(rel) == rel and not rel.startswith("..") and os.path.isfile(path):
            removed.append(rel)
            diffs.append({"before_header": rel, "after_header": "(removed)",
                          "before": _read(path) or "", "after": ""})

    validated = _validate(module, changed, files)
    new_index = json.dumps(sorted(files), indent=1) + "\n"
    if not module.check_mode:
        for rel in changed:
            _write(os.path.join(dest, rel), files[rel])
        for rel in removed:
            os.unlink(os.path.join(dest, rel))
        if index_text != new_index:
            _write(index_path, new_index)

    manifests = manifest_order([r for r in files if r.startswith("specs/")])
    result = dict(
        changed=bool(changed or removed),
        files=sorted(files),
        changed_files=changed,
        removed_files=removed,
        manifests=[os.path.join(dest, r) for r in manifests],
        envoy_configs=[os.path.join(dest, r) for r in sorted(files) if r.startswith("envoy/")],
        validated=validated,
    )
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
