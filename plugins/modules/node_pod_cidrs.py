#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Discover node pod CIDRs from a running cluster (thin wrapper over module_utils)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_pod_cidrs
short_description: Read every node's pod CIDR and address from a running Kubernetes cluster
description:
  - Lists Nodes (C(spec.podCIDRs) and the C(InternalIP)) and, for Cilium's cluster-pool IPAM,
    CiliumNodes (C(spec.ipam.podCIDRs)) with the kubernetes Python client and a kubeconfig,
    and returns the route set C(<pod CIDR> via <node InternalIP>) for M(kubeflat.cluster.converge).
  - Read-only; always C(changed=false). Runs where the kubeconfig is (the controller).
  - Refuses a node without an IPv4 pod CIDR or InternalIP, and pod CIDRs shared by nodes.
requirements:
  - kubernetes (Python client)
options:
  kubeconfig:
    description: Path of the kubeconfig.
    type: path
    required: true
  context:
    description: Kubeconfig context; empty means the current context.
    type: str
    default: ""
  resource:
    description:
      - C(node) reads Node C(spec.podCIDRs) (flannel, Cilium C(ipam.mode=kubernetes)).
      - C(ciliumnode) reads CiliumNode C(spec.ipam.podCIDRs) (Cilium cluster-pool).
      - C(auto) takes Node podCIDRs and falls back to the CiliumNode of a node without any.
    type: str
    choices: [auto, node, ciliumnode]
    default: auto
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Pod CIDRs from the running cluster
  kubeflat.cluster.node_pod_cidrs:
    kubeconfig: /etc/kubernetes/admin.conf
  delegate_to: localhost
  run_once: true
  register: discovered
"""

RETURN = r"""
routes:
  description: One route per node pod CIDR, sorted by destination.
  returned: success
  type: list
  elements: dict
  sample:
    - {dest: 10.244.1.0/24, via: 10.77.0.21, node: w1, source: Node spec.podCIDRs}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_discovery import (
    DiscoveryError, fetch_api_objects, routes_from_api)

try:
    import kubernetes  # noqa: F401  pylint: disable=unused-import
    HAS_K8S = True
    K8S_IMPORT_ERROR = None
except ImportError:
    HAS_K8S = False
    K8S_IMPORT_ERROR = traceback.format_exc()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kubeconfig=dict(type="path", required=True),
            context=dict(type="str", default=""),
            resource=dict(type="str", choices=["auto", "node", "ciliumnode"], default="auto"),
        ),
        supports_check_mode=True,
    )
    if not HAS_K8S:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=K8S_IMPORT_ERROR)
    p = module.params
    try:
        nodes, cilium = fetch_api_objects(p["kubeconfig"], p["context"], p["resource"])
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg="cannot read nodes from the cluster of kubeconfig %s: %s"
                         % (p["kubeconfig"], exc))
    try:
        routes = routes_from_api(nodes, cilium, p["resource"])
    except DiscoveryError as exc:
        module.fail_json(msg="cluster pod CIDRs unusable: %s" % exc)
    module.exit_json(changed=False, routes=routes)


if __name__ == "__main__":
    main()
