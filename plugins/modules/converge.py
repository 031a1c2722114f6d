#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge everything one stage owns on one host in one call (thin over module_utils)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: converge
short_description: Converge in one call the files, sysctls, packages, routes and units a kubeflat stage owns on a host
description:
  - One module call per host per stage is the floor of a converged Ansible run; this module
    checks everything a stage owns on the host and changes only what differs, reporting item by
    item what it changed (or, in check mode, would change), with one C(--diff) entry per item.
  - Order of work. First everything is read and planned; any refusal (a route that would cut the
    host off or override a foreign route, a missing prerequisite, an unknown owner, a malformed
    item) fails the call B(before anything changes). Then missing packages are installed
    (a package that is already installed is never asked about, the dpkg status file is read),
    prerequisites are checked, files are written atomically (the route protocol name first),
    sysctls are set, routes are changed, systemd is reloaded when a unit file under
    C(/etc/systemd/system) changed, and units are enabled.
  - Routes follow the rules of M(kubeflat.cluster.converge) (the same planning code). Only routes
    with kernel route protocol 201 (C(kubeflat)) are ever replaced or deleted; foreign, default
    and connected routes are never touched. The route set is also written to I(routes.persist_path)
    as an C(ip -batch) file for the boot unit.
  - Supports check mode (exact, it reads everything and changes nothing) and diff mode.
options:
  host:
    description: Host name used in messages and report lines (the role passes C(inventory_hostname)).
    type: str
    default: ""
  files:
    description: Files the stage owns on this host. Missing parent directories are created (0755).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: str
        required: true
      content:
        description: The whole content (required unless I(state=absent)).
        type: str
      mode:
        description: Octal mode.
        type: str
        default: "0644"
      owner:
        description: Owner name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
      state:
        description: C(present) writes the file, C(absent) removes a file kubeflat wrote.
        type: str
        choices: [present, absent]
        default: present
      secret:
        description: Never show the content in C(--diff) output (keys, tokens).
        type: bool
        default: false
      validate:
        description: A checker run on the new content before it replaces the file; C(%s) is the new file.
        type: str
      backup:
        description:
          - The first time the file is replaced, keep the original under C(/var/lib/kubeflat/backup)
            (same path below it), so remove-node and reset can put it back.
        type: bool
        default: false
  sysctls:
    description: Runtime sysctls to set now (persist them with a file item under C(/etc/sysctl.d)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Dotted sysctl name.
        type: str
        required: true
      value:
        description: Wanted value.
        type: raw
        required: true
      denied:
        description: When the host does not let the sysctl be set (read-only C(/proc/sys)), C(fail) or C(warn).
        type: str
        choices: [fail, warn]
        default: fail
  packages:
    description: Debian packages that must be installed; only missing ones are installed (C(apt-get install)).
    type: list
    elements: str
    default: []
  holds:
    description: Installed packages to hold against upgrades (C(apt-mark hold)); ones not installed yet are left for the run that installs them.
    type: list
    elements: str
    default: []
  query_packages:
    description: More packages whose installed version to report in RV(package_versions) (nothing is installed).
    type: list
    elements: str
    default: []
  kernel_modules:
    description:
      - Kernel modules that must be present. A built-in or loaded module is recognised and
        reported in RV(report) (never "loaded"); a loadable one is loaded with C(modprobe);
        one that cannot be had on this kernel is refused.
    type: list
    elements: str
    default: []
  swap_off:
    description: Turn active swap off (C(swapoff -a)) and comment swap lines out of C(/etc/fstab).
    type: bool
    default: false
  require:
    description: Paths that must exist (after the packages are installed); the message explains the fix.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: str
        required: true
      executable:
        description: The path must be executable.
        type: bool
        default: false
      msg:
        description: What to tell the user when it is missing.
        type: str
  routes:
    description:
      - The kubeflat route set of this host; omit to leave routes alone. An empty I(routes.routes)
        removes every kubeflat-owned route.
    type: dict
    suboptions:
      routes:
        description: Items C({dest, via, node}).
        type: list
        elements: dict
        required: true
      persist_path:
        description: The C(ip -batch) file re-applied at boot.
        type: path
        default: /etc/kubeflat/pod-routes.batch
      rt_protos_path:
        description: Where protocol 201 is named C(kubeflat).
        type: path
        default: /etc/iproute2/rt_protos.d/kubeflat.conf
      persist:
        description:
          - Write I(persist_path) and I(rt_protos_path). C(false) leaves both to the I(files)
            items, e.g. to remove them (state absent) together with every route (remove-node).
        type: bool
        default: true
  units:
    description: systemd units to enable (their unit files are given as I(files)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Unit name, e.g. C(kubeflat-pod-routes.service).
        type: str
        required: true
      enabled:
        description: C(true) enables the unit; C(false) disables and stops it (before its unit file is removed).
        type: bool
        default: true
      started:
        description: Also start the unit when it is not active.
        type: bool
        default: false
  dirs:
    description:
      - Directories kubeflat made, removed when nothing else is in them once this call's
        I(files) with C(state=absent) are gone (remove-node, reset); one holding anything else
        stays.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: str
        required: true
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Converge the static-mode network of this node (one call)
  kubeflat.cluster.converge:
    host: "{{ inventory_hostname }}"
    packages: [containernetworking-plugins]
    require:
      - {path: /usr/lib/cni/bridge, executable: true, msg: "install containernetworking-plugins"}
    files:
      - path: /etc/cni/net.d/10-kubeflat.conflist
        content: "{{ conflist | to_nice_json }}"
      - path: /etc/sysctl.d/90-kubeflat-cni-static.conf
        content: "net.ipv4.ip_forward = 1\n"
    sysctls:
      - {name: net.ipv4.ip_forward, value: 1}
    routes:
      routes:
        - {dest: 10.244.1.0/24, via: 10.77.0.21, node: w1}
"""

RETURN = r"""
changes:
  description: Every item that changed (or would change in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{kind: route, name: 10.244.1.0/24 via 10.77.0.21, action: add, detail: node w1}]
report:
  description: The same, one line per item, naming the host.
  returned: always
  type: list
  elements: str
  sample: ["w2: add route 10.244.1.0/24 via 10.77.0.21 (node w1)"]
pending:
  description: Whether anything differs from the wanted state (same as C(changed), also in check mode).
  returned: always
  type: bool
check_mode:
  description: Whether this call only checked (check mode); its C(plan) is then what the host has now.
  returned: always
  type: bool
routes:
  description: The kubeflat-owned routes after the run (in check mode, the planned set), C(dest via gw).
  returned: when routes is given
  type: list
  elements: str
changed_paths:
  description: Files written or removed (or that would be, in check mode); handlers key on them.
  returned: always
  type: list
  elements: str
package_versions:
  description: Installed version of every package in I(packages), I(holds) and I(query_packages), before this run.
  returned: always
  type: dict
  sample: {containerd: 1.6.20~ds1-1+b1}
warnings_detail:
  description: Sysctls the host did not let us set (with I(denied=warn)).
  returned: always
  type: list
  elements: str
ip_path:
  description: Path of C(ip) on the host.
  returned: when routes is given
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_host import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default=""),
            files=dict(type="list", elements="dict", default=[]),
            sysctls=dict(type="list", elements="dict", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            holds=dict(type="list", elements="str", default=[]),
            query_packages=dict(type="list", elements="str", default=[]),
            kernel_modules=dict(type="list", elements="str", default=[]),
            swap_off=dict(type="bool", default=False),
            require=dict(type="list", elements="dict", default=[]),
            routes=dict(type="dict", options=dict(
                routes=dict(type="list", elements="dict", required=True),
                persist_path=dict(type="path", default="/etc/kubeflat/pod-routes.batch"),
                rt_protos_path=dict(type="path", default="/etc/iproute2/rt_protos.d/kubeflat.conf"),
                persist=dict(type="bool", default=True),
            )),
            units=dict(type="list", elements="dict", default=[]),
            dirs=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
