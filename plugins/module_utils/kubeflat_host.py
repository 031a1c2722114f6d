# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host side of ``kubeflat.cluster.converge``: read what a stage owns, plan it, apply the plan.

All decisions are the pure functions of ``kubeflat_items``, ``kubeflat_routes`` and
``kubeflat_nodeprep``; this file reads the host (files, /proc, /sys, the dpkg status file,
``ip -json``, systemd links) and runs the commands a plan calls for, through the AnsibleModule
it is given. Nothing changes before every item is planned, so every refusal comes first.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import grp
import os
import platform
import pwd
import shutil
import tempfile

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import (
    ConvergeError, active_swaps, backup_path, change, check_require, file_diff, fstab_swap_off,
    installed_packages, package_selections, plan_backup, plan_file, plan_holds, plan_packages, plan_sysctl,
    plan_unit, report_lines, sysctl_path, validate_file, validate_packages, validate_require,
    validate_sysctl, validate_unit, plan_dir, validate_dir)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_nodeprep import (
    MODULE_INDICATORS, NodePrepError, indicator_present, module_state)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import (
    RouteError, batch_file, desired_lines, describe, owned_lines, parse_addresses, parse_routes,
    plan_changed, plan_routes, route_argv, rt_protos_file)

SYSTEMD_DIR = "/etc/systemd/system/"
DPKG_STATUS = "/var/lib/dpkg/status"
FSTAB = "/etc/fstab"


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


def _write_text(module, path, content, mode, ids):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kubeflat-")
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.chown(tmp, ids[0], ids[1])
    return tmp


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


def _diff(header, before, after):
    return {"before_header": header, "after_header": header, "before": before, "after": after}


class Plan(object):
    """Everything read and decided before any change."""

    def __init__(self, module, params, host):
        self.module = module
        self.params = params
        self.host = host
        self.changes = []
        self.diff = []
        self.notes = []           # how things were found (built-in kernel modules, ...)
        self.warnings = []        # sysctls this host does not let us set (denied=warn)
        self.files = []           # (item, ids) to write or remove
        self.sysctls = []
        self.packages = []        # names to install
        self.holds = []           # names to hold
        self.modules = []         # kernel modules to load
        self.swapoff = False
        self.fstab = None         # new /etc/fstab text
        self.units = []           # items to enable, disable or start
        self.dirs = []            # empty kubeflat directories to remove, deepest first
        self.route_commands = []
        self.route_plan = None
        self.desired_routes = []
        self.versions = {}        # installed version of every package asked about
        self.ip = None

    def add(self, items, header=None, before="", after=""):
        self.changes.extend(items)
        if items and header:
            self.diff.append(_diff(header, before, after))


# --------------------------------------------------------------------------- planning
def _plan_routes(plan, routes):
    module, host = plan.module, plan.host
    plan.ip = module.get_bin_path("ip", required=True)
    table = parse_routes(_ip_json(module, plan.ip, ["-details", "route", "show", "table", "main"]))
    addresses = parse_addresses(_ip_json(module, plan.ip, ["addr", "show"]))
    rp = plan.route_plan = plan_routes(host, routes["routes"], table, addresses)
    plan.desired_routes = rp["add"] + rp["replace"] + rp["keep"]
    plan.route_commands = ([route_argv(plan.ip, "delete", r) for r in rp["delete"]]
                           + [route_argv(plan.ip, "replace", r) for r in rp["replace"]]
                           + [route_argv(plan.ip, "add", r) for r in rp["add"]])
    found = [change("route", describe(r), action, "node %s" % r["node"] if r.get("node") else "")
             for action in ("delete", "replace", "add") for r in rp[action]]
    plan.add(found, "%s: kubeflat routes (ip route, proto 201)" % host if plan_changed(rp) else None,
             "\n".join(owned_lines(table)) + "\n",
             "\n".join(desired_lines(plan.desired_routes)) + "\n")
    if not routes["persist"]:
        return []
    # The protocol name first, so `ip route` shows "proto kubeflat" from then on.
    return [validate_file({"path": routes["rt_protos_path"], "content": rt_protos_file()}),
            validate_file({"path": routes["persist_path"],
                           "content": batch_file(plan.desired_routes)})]


def _plan_packages(plan, params):
    names = validate_packages(params["packages"])
    holds = validate_packages(params["holds"])
    asked = names + holds + validate_packages(params["query_packages"])
    if not asked:
        return
    status = _read(DPKG_STATUS) or ""
    installed = installed_packages(status)
    plan.versions = dict((n, installed[n]) for n in asked if n in installed)
    missing = plan_packages(names, installed)
    plan.packages = [c["name"] for c in missing]
    plan.add(missing, "%s: packages" % plan.host, "",
             "".join("%s (install)\n" % n for n in plan.packages))
    held = plan_holds(holds, installed, package_selections(status))
    plan.holds = [c["name"] for c in held]
    plan.add(held, "%s: package holds" % plan.host, "",
             "".join("%s (hold)\n" % n for n in plan.holds))


def _plan_kernel_modules(plan, names):
    builtin = _read("/lib/modules/%s/modules.builtin" % platform.release()) or ""
    filesystems = _read("/proc/filesystems")
    for raw in names:
        try:
            state, detail = module_state(
                raw,
                sys_module=os.path.isdir("/sys/module/" + str(raw)),
                sys_initstate=_read("/sys/module/%s/initstate" % raw),
                indicator=indicator_present(
                    raw, os.path.exists(MODULE_INDICATORS.get(raw, "/nonexistent")), filesystems),
                builtin_listed=any(line.strip().endswith(("/%s.ko" % raw, "/%s.ko" % str(raw).replace("_", "-")))
                                   for line in builtin.splitlines()),
                loadable_support=os.path.exists("/proc/modules"))
        except NodePrepError as exc:
            raise ConvergeError("kernel module", raw, str(exc))
        if state == "unavailable":
            raise ConvergeError("kernel module", raw, "%s: not available: %s" % (plan.host, detail))
        if state == "loadable":
            plan.modules.append(raw)
            plan.add([change("kernel module", raw, "load", detail)], "kernel module %s" % raw,
                     "not loaded\n", "loaded\n")
        else:
            plan.notes.append("%s: %s" % (plan.host, detail))


def _plan_swap(plan):
    swaps = active_swaps(_read("/proc/swaps"))
    if swaps:
        plan.swapoff = True
        plan.add([change("swap", ", ".join(swaps), "off")], "swap", "\n".join(swaps) + "\n", "")
    current = _read(FSTAB)
    if current is not None and fstab_swap_off(current) != current:
        plan.fstab = fstab_swap_off(current)
        plan.add([change("file", FSTAB, "update", "swap lines commented out")], FSTAB, current,
                 plan.fstab)


def _plan_files(plan, files):
    for item in files:
        ids = _ids(item) if item["state"] == "present" else (0, 0)
        current = _read(item["path"])
        found = plan_file(item, current, _stat(item["path"]), ids)
        if found and item["state"] == "present":
            kept = plan_backup(item, current, os.path.exists(backup_path(item["path"])))
            found = kept + found
            item["keep_original"] = bool(kept)
        if found:
            plan.files.append((item, ids))
            plan.changes.extend(found)
            if any(c["action"] in ("create", "update", "remove") for c in found):
                plan.diff.append(file_diff(item, current))


def _plan_dirs(plan, dirs):
    """Directories to remove: empty once this call's file removals (and deeper dirs) are done."""
    going = set(i["path"] for i, _unused in plan.files if i["state"] == "absent")
    for item in sorted((validate_dir(d) for d in dirs), key=lambda d: -d["path"].count("/")):
        path = item["path"]
        found = plan_dir(item, os.listdir(path) if os.path.isdir(path) else None, going)
        if found:
            plan.dirs.append(path)
            going.add(path)
            plan.add(found, path, "directory\n", "")


def _plan_sysctls(plan, sysctls):
    for raw in sysctls:
        item = validate_sysctl(raw)
        path = sysctl_path(item["name"])
        found = plan_sysctl(item, _read(path))
        if found and not os.access(path, os.W_OK):
            # Read-only /proc/sys (a container): known before any change, so check mode is exact.
            msg = ("sysctl %s cannot be set on %s (%s is read-only here); it stays %s (a "
                   "persistent setting is still written for hosts where it is allowed)"
                   % (item["name"], plan.host, path, found[0]["detail"].split(" -> ")[0]))
            if item["denied"] == "fail":
                raise ConvergeError("sysctl", item["name"], msg)
            plan.warnings.append(msg)
            continue
        if found:
            plan.sysctls.append(item)
            plan.add(found, "sysctl %s" % item["name"],
                     "%s = %s\n" % (item["name"], found[0]["detail"].split(" -> ")[0]),
                     "%s = %s\n" % (item["name"], item["value"]))


def _plan_units(plan, units):
    systemctl = None
    for raw in units:
        item = validate_unit(raw)
        enabled = bool(glob.glob(SYSTEMD_DIR + "*.wants/" + item["name"]))
        found = plan_unit(item, enabled)
        if item["enabled"] and raw.get("started"):
            systemctl = systemctl or plan.module.get_bin_path("systemctl", required=True)
            rc, _unused, _unused2 = plan.module.run_command([systemctl, "is-active", "--quiet", item["name"]])
            if rc != 0:
                found.append(change("unit", item["name"], "start"))
        item["start"] = any(c["action"] == "start" for c in found)
        if found:
            plan.units.append(item)
            plan.add(found, "unit %s" % item["name"],
                     "enabled\n" if enabled else "disabled\n",
                     "enabled\n" if item["enabled"] else "disabled\n")


def plan_all(module, params, host):
    plan = Plan(module, params, host)
    files = [validate_file(f) for f in params["files"]]
    if params["routes"] is not None:
        files = _plan_routes(plan, params["routes"]) + files
    _plan_packages(plan, params)
    _plan_kernel_modules(plan, params["kernel_modules"])
    if params["swap_off"]:
        _plan_swap(plan)
    _plan_files(plan, files)
    _plan_dirs(plan, params.get("dirs") or [])
    _plan_sysctls(plan, params["sysctls"])
    _plan_units(plan, params["units"])
    for raw in params["require"]:
        item = validate_require(raw)
        # A package about to be installed may provide it: checked again after installing.
        if not plan.packages:
            check_require(item, os.path.exists(item["path"]), os.access(item["path"], os.X_OK), host)
    return plan


# --------------------------------------------------------------------------- applying
def _validate_file(module, item, tmp):
    """Run the item's checker on the new content (``%s`` is the file) before it goes live."""
    argv = [a.replace("%s", tmp) for a in item["validate"].split()]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        os.unlink(tmp)
        raise ConvergeError("file", item["path"], "the new content failed `%s`: %s" % (
            item["validate"], (err or out).strip()[-1500:]))


def _apply_files(plan):
    module, reload_units = plan.module, False
    for item, ids in plan.files:
        if item["state"] == "absent":
            os.unlink(item["path"])
        else:
            if item.get("keep_original"):
                kept = backup_path(item["path"])
                if not os.path.isdir(os.path.dirname(kept)):
                    os.makedirs(os.path.dirname(kept), 0o700)
                shutil.copy2(item["path"], kept)
            tmp = _write_text(module, item["path"], item["content"], item["mode"], ids)
            if item.get("validate"):
                _validate_file(module, item, tmp)
            module.atomic_move(tmp, item["path"], unsafe_writes=False)
            # atomic_move gives a replaced file the old file's owner: set what was asked.
            os.chown(item["path"], ids[0], ids[1])
            os.chmod(item["path"], item["mode"])
        reload_units = reload_units or item["path"].startswith(SYSTEMD_DIR)
    return reload_units


def apply(plan, warnings):
    module, host, params = plan.module, plan.host, plan.params
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
    if plan.holds:
        module.run_command(["apt-mark", "hold"] + plan.holds, check_rc=True)
    for name in plan.modules:
        rc, out, err = module.run_command([module.get_bin_path("modprobe", required=True), name])
        if rc != 0:
            module.fail_json(msg="%s: modprobe %s failed: %s" % (host, name, (err or out).strip()))
    if plan.swapoff:
        module.run_command([module.get_bin_path("swapoff", required=True), "-a"], check_rc=True)
    if plan.fstab is not None:
        st = os.stat(FSTAB)
        tmp = _write_text(module, FSTAB, plan.fstab, st.st_mode & 0o7777, (st.st_uid, st.st_gid))
        module.atomic_move(tmp, FSTAB, unsafe_writes=False)
    systemctl = None
    if plan.units or any(i["path"].startswith(SYSTEMD_DIR) for i, _unused in plan.files):
        systemctl = module.get_bin_path("systemctl", required=True)
    for item in plan.units:
        if not item["enabled"]:        # before its unit file may be removed below
            module.run_command([systemctl, "disable", "--now", item["name"]], check_rc=True)
    reload_units = _apply_files(plan)
    for path in plan.dirs:
        os.rmdir(path)
    for item in plan.sysctls:
        try:
            with open(sysctl_path(item["name"]), "w") as handle:
                handle.write(item["value"])
        except (IOError, OSError) as exc:
            msg = "%s: setting sysctl %s=%s failed: %s" % (host, item["name"], item["value"], exc)
            if item["denied"] == "fail":
                module.fail_json(msg=msg)
            module.warn(msg)
            warnings.append(msg)
    for argv in plan.route_commands:
        rc, out, err = module.run_command(argv)
        if rc != 0:
            module.fail_json(msg="%s: '%s' failed: %s" % (host, " ".join(argv), err.strip()),
                             plan=plan.route_plan)
    if reload_units:
        module.run_command([systemctl, "daemon-reload"], check_rc=True)
    for item in plan.units:
        if item["enabled"]:
            module.run_command([systemctl, "enable", item["name"]], check_rc=True)
        if item.get("start"):
            module.run_command([systemctl, "start", item["name"]], check_rc=True)


# --------------------------------------------------------------------------- the whole call
def run(module):
    """Plan every item, apply the plan unless in check mode, and return the module result."""
    params = module.params
    host = params["host"] or platform.node()
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
            apply(plan, warnings)
        except ConvergeError as exc:
            module.fail_json(msg="kubeflat refuses %s" % exc, kind=exc.kind, name=exc.name,
                             reason=exc.reason)
    result = dict(changed=pending, pending=pending, changes=plan.changes,
                  report=report_lines(host, plan.changes, module.check_mode) + plan.notes,
                  changed_paths=sorted(set(item["path"] for item, _unused in plan.files)
                                       | (set([FSTAB]) if plan.fstab is not None else set())),
                  package_versions=plan.versions, warnings_detail=warnings,
                  diff=plan.diff if pending else [], check_mode=module.check_mode)
    if params["routes"] is not None:
        result["ip_path"] = plan.ip
        result["plan"] = plan.route_plan
        if pending and not module.check_mode and plan.route_commands:
            table = parse_routes(_ip_json(module, plan.ip,
                                          ["-details", "route", "show", "table", "main"]))
            result["routes"] = owned_lines(table)
        else:
            result["routes"] = desired_lines(plan.desired_routes)
    return result
