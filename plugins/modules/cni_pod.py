#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make (or remove) a test pod with the node's real CNI plugins, as a container runtime does."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cni_pod
short_description: Create a network-only test pod with the node's CNI conflist
description:
  - Creates a network namespace C(/run/netns/<name>) and runs every plugin of the CNI conflist
    with C(CNI_COMMAND=ADD) into it, in order, passing each plugin the previous result, as a
    container runtime (libcni) does. The plugins are the real binaries under I(cni_path).
  - Idempotent; an existing pod namespace with an IPv4 address on I(ifname) is reused.
    Before a new ADD it runs DEL for the same container id, so a host-local reservation left
    from before a reboot is released.
  - C(state=absent) runs DEL (plugins in reverse order) and deletes the namespace.
  - Used by C(playbooks/verify.yml); it changes nothing but the test pod.
options:
  name:
    description: Pod name, used as namespace name and CNI container id.
    type: str
    required: true
  state:
    description: Whether the pod exists.
    type: str
    choices: [present, absent]
    default: present
  conflist_path:
    description: The CNI conflist to run.
    type: path
    default: /etc/cni/net.d/10-kubeflat.conflist
  cni_path:
    description: Directory holding the CNI plugin binaries.
    type: path
    default: /usr/lib/cni
  ifname:
    description: Interface name inside the pod.
    type: str
    default: eth0
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: A test pod on every node
  kubeflat.cluster.cni_pod:
    name: kubeflat-verify
  register: pod
"""

RETURN = r"""
address:
  description: The pod's IPv4 address (null in check mode when the pod does not exist yet).
  returned: always
  type: str
  sample: 10.244.1.2
netns:
  description: Path of the pod's network namespace.
  returned: always
  type: str
  sample: /run/netns/kubeflat-verify
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cni_static import (
    CniError, cni_env, plugin_config, pod_ipv4)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import parse_addresses


def _pod_address(module, ip, name, ifname):
    rc, out, err = module.run_command([ip, "-n", name, "-json", "addr", "show", "dev", ifname])
    if rc != 0:
        return None
    for addr in parse_addresses(out):
        if not addr["loopback"]:
            return addr["address"]
    return None


def _run_chain(module, conflist, command, env_args):
    plugins = conflist.get("plugins") or []
    order = range(len(plugins)) if command == "ADD" else reversed(range(len(plugins)))
    prev = None
    for index in order:
        conf = plugin_config(conflist, index, prev if command == "ADD" else None)
        binary = os.path.join(env_args["cni_path"], conf["type"])
        if not os.access(binary, os.X_OK):
            return None, "CNI plugin %s not found: install containernetworking-plugins" % binary
        env = cni_env(command, env_args["container_id"], env_args["netns"], env_args["ifname"],
                      env_args["cni_path"])
        rc, out, err = module.run_command([binary], data=json.dumps(conf), environ_update=env)
        if rc != 0:
            return None, "%s %s failed (rc %d): %s %s" % (
                conf["type"], command, rc, out.strip(), err.strip())
        if command == "ADD":
            prev = json.loads(out)
    return prev, None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            conflist_path=dict(type="path", default="/etc/cni/net.d/10-kubeflat.conflist"),
            cni_path=dict(type="path", default="/usr/lib/cni"),
            ifname=dict(type="str", default="eth0"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    ip = module.get_bin_path("ip", required=True)
    netns = "/run/netns/%s" % p["name"]
    try:
        with open(p["conflist_path"]) as handle:
            conflist = json.load(handle)
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg="cannot read CNI conflist %s: %s" % (p["conflist_path"], exc))
    env_args = {"container_id": p["name"], "netns": netns, "ifname": p["ifname"],
                "cni_path": p["cni_path"]}
    try:
        cni_env("ADD", p["name"], netns, p["ifname"], p["cni_path"])
    except CniError as exc:
        module.fail_json(msg="name: %s" % exc)
    exists = os.path.exists(netns)
    address = _pod_address(module, ip, p["name"], p["ifname"]) if exists else None

    if p["state"] == "absent":
        if not exists:
            module.exit_json(changed=False, address=None, netns=netns)
        if not module.check_mode:
            _run_chain(module, conflist, "DEL", env_args)
            module.run_command([ip, "netns", "del", p["name"]], check_rc=True)
        module.exit_json(changed=True, address=None, netns=netns,
                         diff={"before": "pod %s %s\n" % (p["name"], address), "after": ""})

    if address:
        module.exit_json(changed=False, address=address, netns=netns)
    if module.check_mode:
        module.exit_json(changed=True, address=None, netns=netns)
    # Release whatever an earlier incarnation of this pod held (host-local keeps its
    # reservations on disk across reboots), then create it afresh.
    _run_chain(module, conflist, "DEL", env_args)
    if not exists:
        module.run_command([ip, "netns", "add", p["name"]], check_rc=True)
    result, error = _run_chain(module, conflist, "ADD", env_args)
    if error:
        _run_chain(module, conflist, "DEL", env_args)
        module.run_command([ip, "netns", "del", p["name"]])
        module.fail_json(msg="creating pod %s failed: %s" % (p["name"], error))
    address = pod_ipv4(result) or _pod_address(module, ip, p["name"], p["ifname"])
    module.exit_json(changed=True, address=address, netns=netns, cni_result=result,
                     diff={"before": "", "after": "pod %s %s\n" % (p["name"], address)})


if __name__ == "__main__":
    main()
