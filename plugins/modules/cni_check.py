#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node-side CNI checks: gather facts on the node, judge them with kubeflat_cni_checks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cni_check
short_description: Check a node for the classic CNI failures (flannel host-gw, Cilium)
description:
  - Reads (never changes) the node's CNI bin dirs, CNI conf dir, br_netfilter and
    ip_forward state, and flannel's C(/run/flannel/subnet.env) (required after install; before
    install checked when present, so a flannel running with another Network is caught).
  - Fails with the cause and the fix of every failing check; always C(changed=false).
  - The judgement lives in C(plugins/module_utils/kubeflat_cni_checks.py).
options:
  cni:
    description: The CNI the node is checked for.
    type: str
    required: true
    choices: [flannel, cilium]
  phase:
    description:
      - C(pre) before the CNI is installed (at most the CNI's own config may exist),
        C(post) after (exactly the CNI's config; flannel's subnet.env present and consistent).
    type: str
    default: pre
    choices: [pre, post]
  kube_proxy_replacement:
    description: Cilium replaces kube-proxy (then br_netfilter is not required).
    type: bool
    default: false
  bin_dirs:
    description: CNI bin dirs the container runtime searches.
    type: list
    elements: path
    default: [/opt/cni/bin, /usr/lib/cni]
  conf_dir:
    description: The container runtime's CNI conf dir.
    type: path
    default: /etc/cni/net.d
  required_plugins:
    description: Plugin binaries that must exist; unset means the CNI's defaults
      (flannel bridge, host-local, loopback, portmap; cilium loopback).
    type: list
    elements: str
  require_br_netfilter:
    description: Override whether br_netfilter with bridge-nf-call-iptables=1 is required
      (unset means flannel always, Cilium only without kube-proxy replacement).
    type: bool
  require_ip_forward:
    description: Require net.ipv4.ip_forward=1.
    type: bool
    default: true
  pod_cidr:
    description:
      - The cluster pod CIDR, compared with flannel's C(/run/flannel/subnet.env)
        (before install only when the file exists). Required for flannel.
    type: str
  node_pod_cidr:
    description: This node's spec.podCIDR from the API server, if known (post-install).
    type: str
  ip_masq:
    description: Expected flannel --ip-masq setting (post-install).
    type: bool
  subnet_env_path:
    description: flannel's subnet file.
    type: path
    default: /run/flannel/subnet.env
  node_name:
    description: Name used in messages; defaults to the node's hostname.
    type: str
  fail_on_error:
    description: Fail the task when a check fails (otherwise only report).
    type: bool
    default: true
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Check the node before installing flannel
  kubeflat.cluster.cni_check:
    cni: flannel
    phase: pre
    pod_cidr: 10.244.0.0/16

- name: Check flannel after install
  kubeflat.cluster.cni_check:
    cni: flannel
    phase: post
    pod_cidr: "{{ kubeflat_model.pod_cidr }}"
"""

RETURN = r"""
checks:
  description: Every check with C(name), C(ok), C(cause), C(fix), C(detail).
  returned: always
  type: list
  elements: dict
  sample:
    - name: cni_conflist
      ok: false
      cause: "w1: 2 CNI configs in /etc/cni/net.d (10-flannel.conflist, 99-other.conflist)"
      fix: "remove /etc/cni/net.d/99-other.conflist"
      detail: "10-flannel.conflist, 99-other.conflist"
facts:
  description: The raw facts the checks were made from.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cni_checks import (
    check_br_netfilter, check_cni_plugins, check_conflists, check_ip_forward, check_subnet_env,
    failure_message, failures, requirements)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _executables(directory):
    if not os.path.isdir(directory):
        return None
    names = []
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            names.append(name)
    return names


def gather(params):
    """Facts from the node's filesystem; read only."""
    conf_dir = params["conf_dir"]
    facts = {
        "bin_dirs": {d: _executables(d) for d in params["bin_dirs"]},
        "conf_dir": sorted(os.listdir(conf_dir)) if os.path.isdir(conf_dir) else [],
        "br_netfilter": {
            "sys_module": os.path.isdir("/sys/module/br_netfilter"),
            "proc_bridge": os.path.isdir("/proc/sys/net/bridge"),
            "nf_call_iptables": _read("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        },
        "ip_forward": _read("/proc/sys/net/ipv4/ip_forward"),
    }
    if params["cni"] == "flannel":
        facts["subnet_env"] = _read(params["subnet_env_path"])
    return facts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cni=dict(type="str", required=True, choices=["flannel", "cilium"]),
            phase=dict(type="str", default="pre", choices=["pre", "post"]),
            kube_proxy_replacement=dict(type="bool", default=False),
            bin_dirs=dict(type="list", elements="path", default=["/opt/cni/bin", "/usr/lib/cni"]),
            conf_dir=dict(type="path", default="/etc/cni/net.d"),
            required_plugins=dict(type="list", elements="str"),
            require_br_netfilter=dict(type="bool"),
            require_ip_forward=dict(type="bool", default=True),
            pod_cidr=dict(type="str"),
            node_pod_cidr=dict(type="str"),
            ip_masq=dict(type="bool"),
            subnet_env_path=dict(type="path", default="/run/flannel/subnet.env"),
            node_name=dict(type="str"),
            fail_on_error=dict(type="bool", default=True),
        ),
        required_if=[("phase", "post", ("pod_cidr",)), ("cni", "flannel", ("pod_cidr",))],
        supports_check_mode=True,
    )
    p = module.params
    node = p["node_name"] or os.uname()[1]
    need = requirements(p["cni"], p["kube_proxy_replacement"], p["required_plugins"])
    if p["require_br_netfilter"] is not None:
        need["br_netfilter"] = p["require_br_netfilter"]
    facts = gather(p)
    checks = [
        check_cni_plugins(node, p["bin_dirs"], facts["bin_dirs"], need["plugins"]),
        check_conflists(node, p["conf_dir"], facts["conf_dir"], need["conflist"],
                        installed=p["phase"] == "post"),
        check_br_netfilter(node, facts["br_netfilter"], need["br_netfilter"]),
        check_ip_forward(node, facts["ip_forward"], p["require_ip_forward"]),
    ]
    if p["cni"] == "flannel" and (p["phase"] == "post" or facts["subnet_env"] is not None):
        # Before install a subnet.env left by a running (or earlier) flannel must already
        # agree with the cluster pod CIDR; after install it must exist and agree.
        checks.append(check_subnet_env(node, facts["subnet_env"], p["pod_cidr"],
                                       p["node_pod_cidr"], p["ip_masq"]))
    if failures(checks) and p["fail_on_error"]:
        module.fail_json(msg="CNI checks failed on %s:\n%s" % (node, failure_message(checks)),
                         checks=checks, facts=facts)
    module.exit_json(changed=False, checks=checks, facts=facts)


if __name__ == "__main__":
    main()
