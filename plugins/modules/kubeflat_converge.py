#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge everything one stage owns on one host in one call (thin over module_utils)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeflat_converge
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
  - Routes follow the rules of M(kubeflat_pod_routes) (the same planning code). Only routes
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
author: kubeflat contributors
"""

EXAMPLES = r"""
- name: Converge the static-mode network of this node (one call)
  kubeflat_converge:
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
routes:
  description: The kubeflat-owned routes after the run (in check mode, the planned set), C(dest via gw).
  returned: when routes is given
  type: list
  elements: str
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

import errno
import glob
import grp
import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kubeflat_items import (
    ConvergeError, change, check_require, file_diff, installed_packages, plan_file,
    plan_packages, plan_sysctl, plan_unit, report_lines, sysctl_path, validate_file,
    validate_packages, validate_require, validate_sysctl, validate_unit)
from ansible.module_utils.kubeflat_routes import (
    RouteError, batch_file, desired_lines, describe, owned_lines, parse_addresses, parse_routes,
    plan_changed, plan_routes, route_argv, rt_protos_file)

SYSTEMD_DIR = "/etc/systemd/system/"
DPKG_STATUS = "/var/lib/dpkg/status"


def _read(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except UnicodeDecodeError:
        return "\0binary"
    except (IOError, OSError):
        return None


def _stat(path):
    try:
        return os.stat(path)
    except OSError:
        return None


def _write(module, item, ids):
    directory = os.path.dirname(item["path"])
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kubeflat-")
    with os.fdopen(fd, "w") as handle:
        handle.write(item["content"])
    os.chmod(tmp, item["mode"])
    os.chown(tmp, ids[0], ids[1])
    module.atomic_move(tmp, item["path"], unsafe_writes=False)
    os.chmod(item["path"], item["mode"])


def _ids(item):
    try:
        return pwd.getpwnam(item["owner"]).pw_uid, grp.getgrnam(item["group"]).gr_gid
    except KeyError:
        raise ConvergeError("file", item["path"], "owner %s or group %s does not exist on this "
                            "host" % (item["owner"], item["group"]))


def _ip_json(module, ip, args):
    rc, out, err = module.run_command([ip, "-json"] + args)
    if rc != 0:
        module.fail_json(msg="ip -json %s failed: %s" % (" ".join(args), err.strip()))
    return out


class Plan(object):
    """Everything read and decided before any change."""

    def __init__(self, module, host):
        self.module = module
        self.host = host
        self.changes = []
        self.diff = []
        self.files = []           # (item, ids, current) to write or remove
        self.sysctls = []         # items to set
        self.packages = []        # names to install
        self.units = []           # items to enable
        self.route_commands = []
        self.route_plan = None
        self.routes_before = []
        self.desired_routes = []
        self.ip = None
        self.warnings = []        # sysctls this host does not let us set (denied=warn)


def plan_all(module, params, host):
    plan = Plan(module, host)
    files = [validate_file(f) for f in params["files"]]
    routes = params["routes"]
    if routes is not None:
        plan.ip = module.get_bin_path("ip", required=True)
        table = parse_routes(_ip_json(module, plan.ip, ["-details", "route", "show", "table", "main"]))
        addresses = parse_addresses(_ip_json(module, plan.ip, ["addr", "show"]))
        plan.route_plan = plan_routes(host, routes["routes"], table, addresses)
        rp = plan.route_plan
        plan.desired_routes = rp["add"] + rp["replace"] + rp["keep"]
        plan.routes_before = owned_lines(table)
        # The protocol name first, so `ip route` shows "proto kubeflat" from then on.
        if routes["persist"]:
            files = [validate_file({"path": routes["rt_protos_path"], "content": rt_protos_file()}),
                     validate_file({"path": routes["persist_path"],
                                    "content": batch_file(plan.desired_routes)})] + files
        plan.route_commands = ([route_argv(plan.ip, "delete", r) for r in rp["delete"]]
                               + [route_argv(plan.ip, "replace", r) for r in rp["replace"]]
                               + [route_argv(plan.ip, "add", r) for r in rp["add"]])
        for action in ("delete", "replace", "add"):
            for r in rp[action]:
                plan.changes.append(change("route", describe(r), action,
                                           "node %s" % r["node"] if r.get("node") else ""))
        if plan_changed(rp):
            header = "%s: kubeflat routes (ip route, proto 201)" % host
            plan.diff.append({"before_header": header, "after_header": header,
                              "before": "\n".join(plan.routes_before) + "\n",
                              "after": "\n".join(desired_lines(plan.desired_routes)) + "\n"})

    names = validate_packages(params["packages"])
    if names:
        with open(DPKG_STATUS) as handle:
            installed = installed_packages(handle.read())
        for item in plan_packages(names, installed):
            plan.changes.append(item)
            plan.packages.append(item["name"])
        if plan.packages:
            plan.diff.append({"before_header": "%s: packages" % host, "after_header": "%s: packages" % host,
                              "before": "", "after": "".join("%s (install)\n" % n for n in plan.packages)})

    for item in files:
        ids = _ids(item) if item["state"] == "present" else (0, 0)
        current = _read(item["path"])
        found = plan_file(item, current, _stat(item["path"]), ids)
        if found:
            plan.changes.extend(found)
            plan.files.append((item, ids))
            if any(c["action"] in ("create", "update", "remove") for c in found):
                plan.diff.append(file_diff(item, current))

    for raw in params["sysctls"]:
        item = validate_sysctl(raw)
        path = sysctl_path(item["name"])
        found = plan_sysctl(item, _read(path))
        if found and not os.access(path, os.W_OK):
            # Read-only /proc/sys (a container): known before any change, so check mode is exact.
            msg = ("sysctl %s cannot be set on %s (%s is read-only here); it stays %s (a "
                   "persistent setting is still written for hosts where it is allowed)"
                   % (item["name"], host, path, found[0]["detail"].split(" -> ")[0]))
            if item["denied"] == "fail":
                raise ConvergeError("sysctl", item["name"], msg)
            plan.warnings.append(msg)
            continue
        if found:
            plan.changes.extend(found)
            plan.sysctls.append(item)
            plan.diff.append({"before_header": "sysctl %s" % item["name"],
                              "after_header": "sysctl %s" % item["name"],
                              "before": "%s = %s\n" % (item["name"], found[0]["detail"].split(" -> ")[0]),
                              "after": "%s = %s\n" % (item["name"], item["value"])})

    for raw in params["units"]:
        item = validate_unit(raw)
        enabled = bool(glob.glob(SYSTEMD_DIR + "*.wants/" + item["name"]))
        found = plan_unit(item, enabled)
        if found:
            plan.changes.extend(found)
            plan.units.append(item)
            plan.diff.append({"before_header": "unit %s" % item["name"], "after_header": "unit %s" % item["name"],
                              "before": "enabled\n" if enabled else "disabled\n",
                              "after": "enabled\n" if item["enabled"] else "disabled\n"})

    for raw in params["require"]:
        item = validate_require(raw)
        # A package about to be installed may provide it: checked again after installing.
        if plan.packages:
            continue
        check_require(item, os.path.exists(item["path"]), os.access(item["path"], os.X_OK), host)
    return plan


def apply(plan, params, warnings):
    module, host = plan.module, plan.host
    if plan.packages:
        rc, out, err = module.run_command(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + plan.packages,
            environ_update={"DEBIAN_FRONTEND": "noninteractive"})
        if rc != 0:
            module.fail_json(msg="%s: apt-get install %s failed: %s" % (
                host, " ".join(plan.packages), (err or out).strip()[-2000:]))
        for raw in params["require"]:
            item = validate_require(raw)
            check_require(item, os.path.exists(item["path"]), os.access(item["path"], os.X_OK), host)
    systemctl = None
    if plan.units or any(i["path"].startswith(SYSTEMD_DIR) for i, _ in plan.files):
        systemctl = module.get_bin_path("systemctl", required=True)
    for item in plan.units:
        if not item["enabled"]:        # before its unit file may be removed below
            module.run_command([systemctl, "disable", "--now", item["name"]], check_rc=True)
    units_reload = False
    for item, ids in plan.files:
        if item["state"] == "absent":
            os.unlink(item["path"])
        else:
            _write(module, item, ids)
        units_reload = units_reload or item["path"].startswith(SYSTEMD_DIR)
    for item in plan.sysctls:
        try:
            with open(sysctl_path(item["name"]), "w") as handle:
                handle.write(item["value"])
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            msg = ("sysctl %s cannot be set on %s: %s; it stays as it was (the persistent setting"
                   " is written for hosts where it is allowed)" % (item["name"], host, exc.strerror))
            if item["denied"] == "fail":
                module.fail_json(msg=msg)
            module.warn(msg)
            warnings.append(msg)
    for argv in plan.route_commands:
        rc, out, err = module.run_command(argv)
        if rc != 0:
            module.fail_json(msg="%s: '%s' failed: %s" % (host, " ".join(argv), err.strip()),
                             plan=plan.route_plan)
    if units_reload:
        module.run_command([systemctl, "daemon-reload"], check_rc=True)
    for item in plan.units:
        if item["enabled"]:
            module.run_command([systemctl, "enable", item["name"]], check_rc=True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default=""),
            files=dict(type="list", elements="dict", default=[]),
            sysctls=dict(type="list", elements="dict", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            require=dict(type="list", elements="dict", default=[]),
            routes=dict(type="dict", options=dict(
                routes=dict(type="list", elements="dict", required=True),
                persist_path=dict(type="path", default="/etc/kubeflat/pod-routes.batch"),
                rt_protos_path=dict(type="path", default="/etc/iproute2/rt_protos.d/kubeflat.conf"),
                persist=dict(type="bool", default=True),
            )),
            units=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = params["host"] or os.uname()[1]
    try:
        plan = plan_all(module, params, host)
    except RouteError as exc:
        module.fail_json(msg="kubeflat refuses route on %s" % exc, host=exc.host,
                         prefix=exc.prefix, reason=exc.reason)
    except ConvergeError as exc:
        module.fail_json(msg="kubeflat refuses %s" % exc, kind=exc.kind, name=exc.name,
                         reason=exc.reason)
    warnings = plan.warnings
    for msg in warnings:
        module.warn(msg)
    pending = bool(plan.changes)
    if pending and not module.check_mode:
        try:
            apply(plan, params, warnings)
        except ConvergeError as exc:
            module.fail_json(msg="kubeflat refuses %s" % exc, kind=exc.kind, name=exc.name,
                             reason=exc.reason)
    result = dict(changed=pending, pending=pending, changes=plan.changes,
                  report=report_lines(host, plan.changes, module.check_mode),
                  warnings_detail=warnings, diff=plan.diff if pending else [])
    if params["routes"] is not None:
        result["ip_path"] = plan.ip
        result["plan"] = plan.route_plan
        if pending and not module.check_mode and plan.route_commands:
            table = parse_routes(_ip_json(module, plan.ip, ["-details", "route", "show", "table", "main"]))
            result["routes"] = owned_lines(table)
        else:
            result["routes"] = desired_lines(plan.desired_routes)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
