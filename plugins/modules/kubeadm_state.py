#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report whether a node is already a kubeadm cluster member (read-only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeadm_state
short_description: Detect whether this node already ran kubeadm init/join
description:
  - Read-only. A node counts as joined when C(/etc/kubernetes/kubelet.conf) exists (written by
    both kubeadm init and kubeadm join); it runs a control plane when the kube-apiserver static
    pod manifest exists as well.
  - Also reports where the C(kubeadm) and C(kubelet) binaries are (or that they are missing),
    so the role can stop with a message naming the binary before the first call needing it.
options:
  kubernetes_dir:
    description: kubeadm's configuration directory.
    type: path
    default: /etc/kubernetes
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Is this node already in the cluster?
  kubeflat.cluster.kubeadm_state:
  register: state
"""

RETURN = r"""
joined:
  description: C(kubelet.conf) exists, so kubeadm init or join already ran here.
  returned: always
  type: bool
control_plane:
  description: The kube-apiserver static pod manifest exists.
  returned: always
  type: bool
initialized:
  description: C(admin.conf) exists (a control plane that can administer the cluster).
  returned: always
  type: bool
kubeadm_path:
  description: Path of the kubeadm binary, empty when missing.
  returned: always
  type: str
kubelet_path:
  description: Path of the kubelet binary, empty when missing.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(kubernetes_dir=dict(type="path", default="/etc/kubernetes")),
        supports_check_mode=True,
    )
    base = module.params["kubernetes_dir"]
    module.exit_json(
        changed=False,
        joined=os.path.isfile(os.path.join(base, "kubelet.conf")),
        control_plane=os.path.isfile(os.path.join(base, "manifests", "kube-apiserver.yaml")),
        initialized=os.path.isfile(os.path.join(base, "admin.conf")),
        kubeadm_path=module.get_bin_path("kubeadm") or "",
        kubelet_path=module.get_bin_path("kubelet") or "",
    )


if __name__ == "__main__":
    main()
