#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manage kubeflat-owned pod routes on a host (thin wrapper over module_utils)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeflat_pod_routes
short_description: Manage the static routes to pod CIDRs that kubeflat owns on a host
description:
  - Makes the kernel's main routing table hold exactly the given routes among the routes
    kubeflat owns, i.e. routes carrying kernel route protocol 201 (C(kubeflat)), registered
    in C(/etc/iproute2/rt_protos.d/kubeflat.conf).
  - Adds missing routes, replaces owned routes whose gateway changed and deletes owned
    routes that are no longer wanted (for example the pod CIDR of a node that left the
    inventory). Routes with any other protocol, the default route and connected routes are
    never touched.
  - Refuses, before changing anything, a gateway that is not on a subnet connected to the
    host, a destination overlapping a network connected to the host, and a destination that
    already has a foreign route. The message names the host, the prefix and the reason.
  - Writes the same route set to an C(ip -batch) file (I(persist_path)) that a boot-time
    systemd unit re-applies, so the routes survive a reboot without an Ansible run.
  - Reads the host state from C(ip -json) output. Supports check mode and diff.
options:
  routes:
    description:
      - The complete set of kubeflat routes this host must have. An empty list removes
        every kubeflat-owned route.
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: Destination pod CIDR (IPv4, no host bits).
        type: str
        required: true
      via:
        description: Gateway, the node address; must be on a connected subnet.
        type: str
        required: true
      node:
        description: Name of the node owning the pod CIDR (used in comments and messages).
        type: str
        default: ""
  persist_path:
    description: File holding the route set as C(ip -batch) commands, re-applied at boot.
    type: path
    default: /etc/kubeflat/pod-routes.batch
  rt_protos_path:
    description: Where the protocol number is given its name C(kubeflat).
    type: path
    default: /etc/iproute2/rt_protos.d/kubeflat.conf
  boot_unit:
    description:
      - Name of the boot unit re-applying I(persist_path); only read, to report whether it
        is enabled (C(boot_unit_enabled)). Empty skips the check.
    type: str
    default: ""
  host:
    description: Host name used in messages (default the inventory name passed by the role).
    type: str
    default: ""
author: kubeflat contributors
"""

EXAMPLES = r"""
- name: Routes to every node's pod CIDR via the node
  kubeflat_pod_routes:
    host: "{{ inventory_hostname }}"
    routes:
      - {dest: 10.244.0.0/24, via: 10.77.0.11, node: cp1}
      - {dest: 10.244.1.0/24, via: 10.77.0.21, node: w1}

- name: Remove every route kubeflat owns on this host
  kubeflat_pod_routes:
    routes: []
"""

RETURN = r"""
plan:
  description: What was (or, in check mode, would be) done.
  returned: always
  type: dict
  sample:
    add: [{dest: 10.244.1.0/24, via: 10.77.0.21, node: w1}]
    replace: []
    delete: [{dest: 10.244.2.0/24, via: 10.77.0.22, dev: eth0}]
    keep: [{dest: 10.244.0.0/24, via: 10.77.0.11, node: cp1}]
routes:
  description: The kubeflat-owned routes after the run, as C(dest via gateway) lines.
  returned: always
  type: list
  elements: str
  sample: ["10.244.0.0/24 via 10.77.0.11"]
commands:
  description: The ip commands run (or that would run in check mode).
  returned: always
  type: list
  elements: list
boot_unit_enabled:
  description: Whether I(boot_unit) is enabled (wanted by some target under /etc/systemd/system).
  returned: always
  type: bool
ip_path:
  description: Path of the C(ip) binary on the host (used by the boot unit).
  returned: always
  type: str
  sample: /usr/sbin/ip
"""

import glob
import os
import platform
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kubeflat_routes import (
    RouteError, batch_file, desired_lines, owned_lines, parse_addresses, parse_routes,
    plan_changed, plan_routes, route_argv, rt_protos_file)


def _read(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _write(module, path, content):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kubeflat-")
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def _ip_json(module, ip, args):
    rc, out, err = module.run_command([ip, "-json"] + args)
    if rc != 0:
        module.fail_json(msg="ip -json %s failed: %s" % (" ".join(args), err.strip()))
    return out


def _state(module, ip):
    routes = parse_routes(_ip_json(module, ip, ["-details", "route", "show", "table", "main"]))
    addresses = parse_addresses(_ip_json(module, ip, ["addr", "show"]))
    return routes, addresses


def main():
    module = AnsibleModule(
        argument_spec=dict(
            routes=dict(type="list", elements="dict", required=True, options=dict(
                dest=dict(type="str", required=True),
                via=dict(type="str", required=True),
                node=dict(type="str", default=""),
            )),
            persist_path=dict(type="path", default="/etc/kubeflat/pod-routes.batch"),
            rt_protos_path=dict(type="path", default="/etc/iproute2/rt_protos.d/kubeflat.conf"),
            host=dict(type="str", default=""),
            boot_unit=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = params["host"] or platform.node()
    ip = module.get_bin_path("ip", required=True)

    routes, addresses = _state(module, ip)
    try:
        plan = plan_routes(host, params["routes"], routes, addresses)
    except RouteError as exc:
        module.fail_json(msg="kubeflat refuses route on %s" % exc, host=exc.host,
                         prefix=exc.prefix, reason=exc.reason)
    desired = plan["add"] + plan["replace"] + plan["keep"]

    commands = [route_argv(ip, "delete", r) for r in plan["delete"]]
    commands += [route_argv(ip, "replace", r) for r in plan["replace"]]
    commands += [route_argv(ip, "add", r) for r in plan["add"]]

    files = [
        (params["rt_protos_path"], rt_protos_file()),
        (params["persist_path"], batch_file(desired)),
    ]
    before_routes = "\n".join(owned_lines(routes)) + "\n"
    after_routes = "\n".join(desired_lines(desired)) + "\n"
    diff = []
    if plan_changed(plan):
        diff.append({"before_header": "%s: kubeflat routes (ip route, proto 201)" % host,
                     "after_header": "%s: kubeflat routes (ip route, proto 201)" % host,
                     "before": before_routes, "after": after_routes})
    file_changes = []
    for path, content in files:
        current = _read(path)
        if current != content:
            file_changes.append((path, content))
            diff.append({"before_header": path, "after_header": path,
                         "before": current or "", "after": content})
    changed = plan_changed(plan) or bool(file_changes)

    if changed and not module.check_mode:
        # The protocol name first, so `ip route` shows "proto kubeflat" from now on.
        for path, content in file_changes:
            if path == params["rt_protos_path"]:
                _write(module, path, content)
        for argv in commands:
            rc, out, err = module.run_command(argv)
            if rc != 0:
                module.fail_json(msg="%s: '%s' failed: %s" % (host, " ".join(argv), err.strip()),
                                 commands=commands, plan=plan)
        for path, content in file_changes:
            if path != params["rt_protos_path"]:
                _write(module, path, content)
        routes, addresses = _state(module, ip)
        final = owned_lines(routes)
    else:
        final = desired_lines(desired) if module.check_mode else owned_lines(routes)

    enabled = bool(params["boot_unit"]) and bool(
        glob.glob("/etc/systemd/system/*.wants/%s" % params["boot_unit"]))
    module.exit_json(changed=changed, plan=plan, routes=final, commands=commands, ip_path=ip,
                     boot_unit_enabled=enabled,
                     diff=diff if changed else [])


if __name__ == "__main__":
    main()
