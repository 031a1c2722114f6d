# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one stage owns on one host, planned item by item: files, sysctls, packages, units.

Pure functions, no I/O. The module ``kubeflat.cluster.converge`` reads the host's state (file bytes
and modes, /proc/sys values, the dpkg status file, systemd ``.wants`` links), asks these
functions what would change, and applies exactly that. Routes are planned by
``kubeflat_routes``; this file covers everything else a stage owns.

Every planned change is a dict ``{"kind", "name", "action", "detail"}``; :func:`report_lines`
turns them into the one-line-per-item report a person reads, and :func:`file_diff` into the
per-item entries of Ansible's ``--diff`` output.
"""

from __future__ import absolute_import, division, print_function

import re
import stat

__metaclass__ = type

_OCTAL_MODE = re.compile(r"^0?[0-7]{3,4}$")
_SYSCTL_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_*-]+)+$")
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@-]+\.(service|socket|timer|target|path|mount)$")
SECRET_TEXT = "(secret content not shown)\n"
# Where the original of a file kubeflat replaces is kept (file items with backup: true), so
# remove-node / reset can put it back (kubeflat_owned).
BACKUP_DIR = "/var/lib/kubeflat/backup"


def backup_path(path):
    return BACKUP_DIR + path


class ConvergeError(ValueError):
    """An item the module must not act on; the message names the item and the reason."""

    def __init__(self, kind, name, reason):
        self.kind = kind
        self.name = name
        self.reason = reason
        super(ConvergeError, self).__init__("%s %s: %s" % (kind, name, reason))


def change(kind, name, action, detail=""):
    return {"kind": kind, "name": name, "action": action, "detail": detail}


# --------------------------------------------------------------------------- files
def parse_mode(mode, path):
    """``"0644"`` / ``"644"`` / ``420`` -> int; anything else is refused."""
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o7777:
        return mode
    if isinstance(mode, str) and _OCTAL_MODE.match(mode):
        return int(mode, 8)
    raise ConvergeError("file", path, "mode %r is not an octal file mode like '0644'" % (mode,))


def validate_file(item):
    """Normalise one file item: absolute path, text content, numeric mode, owner and group."""
    path = item.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "/../" in path + "/":
        raise ConvergeError("file", path, "path must be an absolute path without '..'")
    state = item.get("state") or "present"
    if state not in ("present", "absent"):
        raise ConvergeError("file", path, "state %r is not present or absent" % (state,))
    content = item.get("content")
    if state == "present" and not isinstance(content, str):
        raise ConvergeError("file", path, "content must be text")
    return {
        "path": path,
        "state": state,
        "content": content if state == "present" else None,
        "mode": parse_mode(item.get("mode") or "0644", path),
        "owner": item.get("owner") or "root",
        "group": item.get("group") or "root",
        "secret": bool(item.get("secret")),
        "validate": item.get("validate") or "",
        "backup": bool(item.get("backup")),
    }


def plan_file(item, current, st, ids):
    """Changes for one normalised file item.

    ``current``: the file's text (None if absent); ``st``: its ``os.stat`` result (None if
    absent); ``ids``: ``(uid, gid)`` of the wanted owner and group.
    """
    path = item["path"]
    if item["state"] == "absent":
        return [change("file", path, "remove")] if st is not None else []
    if st is None:
        return [change("file", path, "create", "mode %04o" % item["mode"])]
    out = []
    if current != item["content"]:
        out.append(change("file", path, "update", "content"))
    if stat.S_IMODE(st.st_mode) != item["mode"]:
        out.append(change("file", path, "mode", "%04o -> %04o" % (stat.S_IMODE(st.st_mode),
                                                                  item["mode"])))
    if (st.st_uid, st.st_gid) != tuple(ids):
        out.append(change("file", path, "owner", "%d:%d -> %s:%s" % (
            st.st_uid, st.st_gid, item["owner"], item["group"])))
    return out


def plan_backup(item, current, backup_exists):
    """Keep the original the first time kubeflat replaces a file it did not write."""
    if item["backup"] and current is not None and current != item["content"] and not backup_exists:
        return [change("file", backup_path(item["path"]), "backup", "original of %s" % item["path"])]
    return []


def file_diff(item, current):
    """The ``--diff`` entry of a file whose content changes (secrets never shown)."""
    before = current or ""
    after = item["content"] or ""
    if item["secret"]:
        before = SECRET_TEXT if current is not None else ""
        after = SECRET_TEXT if item["content"] is not None else ""
    return {"before_header": item["path"], "after_header": item["path"],
            "before": before, "after": after}


# --------------------------------------------------------------------------- sysctls
def validate_sysctl(item):
    name = item.get("name")
    if not isinstance(name, str) or not _SYSCTL_NAME.match(name):
        raise ConvergeError("sysctl", name, "not a sysctl name like net.ipv4.ip_forward")
    value = item.get("value")
    if isinstance(value, bool) or value is None:
        raise ConvergeError("sysctl", name, "value %r is not a number or string" % (value,))
    denied = item.get("denied") or "fail"
    if denied not in ("fail", "warn"):
        raise ConvergeError("sysctl", name, "denied %r is not fail or warn" % (denied,))
    return {"name": name, "value": normalize_sysctl(value), "denied": denied}


def normalize_sysctl(value):
    """Compare sysctl values the way the kernel prints them (whitespace-separated fields)."""
    return " ".join(str(value).split())


def sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def plan_sysctl(item, current):
    """Changes for one sysctl; ``current`` is the /proc/sys text (None: no such sysctl)."""
    if current is None:
        raise ConvergeError("sysctl", item["name"], "does not exist on this kernel (%s missing;"
                            " is the module providing it loaded?)" % sysctl_path(item["name"]))
    now = normalize_sysctl(current)
    if now == item["value"]:
        return []
    return [change("sysctl", item["name"], "set", "%s -> %s" % (now, item["value"]))]


# --------------------------------------------------------------------------- packages
def validate_packages(names):
    for name in names or []:
        if not isinstance(name, str) or not _PACKAGE_NAME.match(name):
            raise ConvergeError("package", name, "not a Debian package name")
    return list(names or [])


def installed_packages(status_text):
    """``{name: version}`` of the packages dpkg has fully installed (/var/lib/dpkg/status)."""
    out = {}
    for stanza in (status_text or "").split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            name = fields["Package"].split(":")[0]
            out[name] = fields.get("Version", "")
    return out


def plan_packages(names, installed):
    """Install only what is missing: a package already installed is never asked about."""
    return [change("package", name, "install") for name in names if name not in installed]


# --------------------------------------------------------------------------- units
def validate_unit(item):
    name = item.get("name")
    if not isinstance(name, str) or not _UNIT_NAME.match(name):
        raise ConvergeError("unit", name, "not a systemd unit name like foo.service")
    return {"name": name, "enabled": item.get("enabled", True) is not False}


def plan_unit(item, enabled_now):
    if item["enabled"] and not enabled_now:
        return [change("unit", item["name"], "enable")]
    if not item["enabled"] and enabled_now:
        return [change("unit", item["name"], "disable")]
    return []


# --------------------------------------------------------------------------- directories
def validate_dir(item):
    path = item.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "/../" in path + "/" \
            or path.rstrip("/") == "":
        raise ConvergeError("dir", path, "path must be an absolute path without '..', not /")
    return {"path": path.rstrip("/")}


def plan_dir(item, entries, going):
    """Remove a directory kubeflat made once nothing else is in it.

    ``entries``: the names in it now (None: no such directory); ``going``: the full paths this
    call removes (files with state absent, deeper directories). Anything else in it keeps it.
    """
    if entries is None:
        return []
    if any("%s/%s" % (item["path"], name) not in going for name in entries):
        return []
    return [change("dir", item["path"], "remove", "empty")]


# --------------------------------------------------------------------------- requirements
def validate_require(item):
    path = item.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConvergeError("require", path, "path must be absolute")
    return {"path": path, "executable": bool(item.get("executable")),
            "msg": item.get("msg") or "%s is required" % path}


def check_require(item, exists, executable, host):
    """Refuse a missing prerequisite with the role's own explanation."""
    if not exists or (item["executable"] and not executable):
        raise ConvergeError("require", item["path"], "%s: %s" % (host, item["msg"]))


# --------------------------------------------------------------------------- reporting
def report_lines(host, changes, check_mode):
    """One line per changed item, as a person reads them in the run's output."""
    verb = "would " if check_mode else ""
    words = {"create": "create", "update": "update", "remove": "remove", "mode": "chmod",
             "owner": "chown", "set": "set", "install": "install", "enable": "enable",
             "disable": "disable", "add": "add", "replace": "replace", "delete": "delete", "start": "start", "hold": "hold",
             "load": "load", "off": "turn off", "backup": "keep"}
    out = []
    for item in changes:
        detail = " (%s)" % item["detail"] if item.get("detail") else ""
        out.append("%s: %s%s %s %s%s" % (host, verb, words.get(item["action"], item["action"]),
                                         item["kind"], item["name"], detail))
    return out


# --------------------------------------------------------------------------- node kinds
def package_selections(status_text):
    """``{name: selection}`` (install, hold, deinstall, purge) from /var/lib/dpkg/status."""
    out = {}
    for stanza in (status_text or "").split("\n\n"):
        name = status = None
        for line in stanza.splitlines():
            if line.startswith("Package:"):
                name = line.split(":", 1)[1].strip().split(":")[0]
            elif line.startswith("Status:"):
                status = line.split(":", 1)[1].split()
        if name and status:
            out[name] = status[0]
    return out


def plan_holds(names, installed, selections):
    """Hold installed packages that are not held yet; a package not installed yet is held by
    the run that installs it."""
    return [change("package", name, "hold") for name in names
            if name in installed and selections.get(name) != "hold"]


_FSTAB_SWAP = re.compile(r"^(\s*[^#\s]\S*\s+\S+\s+swap\s.*)$", re.M)
FSTAB_COMMENT = "# swap off for the kubelet (kubeflat): "


def fstab_swap_off(text):
    """/etc/fstab with every active swap line commented out (the kubelet refuses swap)."""
    return _FSTAB_SWAP.sub(lambda m: FSTAB_COMMENT + m.group(1), text or "")


def active_swaps(proc_swaps):
    """Swap devices in use, from /proc/swaps (first line is the header)."""
    return [line.split()[0] for line in (proc_swaps or "").splitlines()[1:] if line.strip()]
