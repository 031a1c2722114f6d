#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build and validate the kubeflat cluster model (thin wrapper over module_utils)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeflat_cluster_model
short_description: Build and validate the kubeflat cluster model from inventory inputs
description:
  - Turns the cluster-wide C(kubeflat_*) variables and the per-host inputs into one validated
    model (distribution, CNI, pod/service CIDRs, each node's pod CIDR, node addresses, outside
    hosts, L2 adjacency, API server endpoint).
  - Refuses bad input with a message naming the variable and the value, before any host is
    changed. Runs on the controller; changes nothing, so it always reports C(changed=false).
options:
  settings:
    description: Cluster-wide settings, the C(kubeflat_*) variables without the prefix.
    type: dict
    required: true
  hosts:
    description:
      - One entry per inventory host with keys C(name), C(groups), C(address), C(pod_cidr).
      - Produced by the C(kubeflat_host_inputs) filter.
    type: list
    elements: dict
    required: true
author: kubeflat contributors
"""

EXAMPLES = r"""
- name: Build the cluster model
  kubeflat_cluster_model:
    settings:
      cni: static
      pod_cidr: 10.244.0.0/16
      host_networks: [10.77.0.0/24]
    hosts: "{{ groups['all'] | map('extract', hostvars) | kubeflat_host_inputs }}"
  register: model
"""

RETURN = r"""
model:
  description: The validated cluster model (see plugins/module_utils/kubeflat_model.py).
  returned: success
  type: dict
  sample:
    cni: static
    pod_cidr: 10.244.0.0/16
    nodes:
      - name: cp1
        address: 10.77.0.11
        pod_cidr: 10.244.0.0/24
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kubeflat_model import ModelError, build_model


def main():
    module = AnsibleModule(
        argument_spec=dict(
            settings=dict(type="dict", required=True),
            hosts=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    try:
        model = build_model(module.params["settings"], module.params["hosts"])
    except ModelError as exc:
        module.fail_json(msg="kubeflat inventory is invalid: %s" % exc, variable=exc.var,
                         value=str(exc.value))
    module.exit_json(changed=False, model=model)


if __name__ == "__main__":
    main()
