"""Unit tests for plugins/module_utils/kubeflat_items.py: what one stage owns on a host,
planned item by item (files, sysctls, packages, units, prerequisites) and reported."""
import os
import stat

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import (
    SECRET_TEXT, ConvergeError, check_require, file_diff, installed_packages, normalize_sysctl,
    parse_mode, plan_file, plan_packages, plan_sysctl, plan_unit, report_lines, sysctl_path,
    validate_file, validate_packages, validate_require, validate_sysctl, validate_unit)


class Stat:
    def __init__(self, mode=0o644, uid=0, gid=0):
        self.st_mode = stat.S_IFREG | mode
        self.st_uid = uid
        self.st_gid = gid


def item(**kw):
    base = {"path": "/etc/kubeflat/x.conf", "content": "a = 1\n"}
    base.update(kw)
    return validate_file(base)


# --------------------------------------------------------------------------- files
def test_file_defaults_are_root_0644_present():
    f = item()
    assert (f["mode"], f["owner"], f["group"], f["state"], f["secret"]) == (0o644, "root", "root",
                                                                            "present", False)


@pytest.mark.parametrize("bad, reason", [
    ({"path": "etc/x"}, "absolute path"),
    ({"path": "/etc/../x"}, "without '..'"),
    ({"path": None}, "absolute path"),
    ({"mode": "rw-r--r--"}, "octal file mode"),
    ({"mode": "0999"}, "octal file mode"),
    ({"state": "gone"}, "present or absent"),
    ({"content": None}, "content must be text"),
])
def test_file_refusals_name_the_item(bad, reason):
    with pytest.raises(ConvergeError) as exc:
        item(**bad)
    assert reason in str(exc.value)
    assert str(exc.value).startswith("file ")


def test_mode_forms():
    assert parse_mode("0600", "/x") == 0o600
    assert parse_mode("755", "/x") == 0o755
    assert parse_mode(0o640, "/x") == 0o640
    with pytest.raises(ConvergeError):
        parse_mode(True, "/x")


def test_missing_file_is_created():
    assert plan_file(item(), None, None, (0, 0)) == [
        {"kind": "file", "name": "/etc/kubeflat/x.conf", "action": "create", "detail": "mode 0644"}]


def test_same_file_is_no_change():
    assert plan_file(item(), "a = 1\n", Stat(), (0, 0)) == []


def test_content_mode_and_owner_each_reported():
    got = plan_file(item(mode="0600"), "a = 2\n", Stat(0o644, 1000, 1000), (0, 0))
    assert [c["action"] for c in got] == ["update", "mode", "owner"]
    assert got[1]["detail"] == "0644 -> 0600"
    assert got[2]["detail"] == "1000:1000 -> root:root"


def test_absent_file_removed_only_when_there():
    gone = item(state="absent", content=None)
    assert plan_file(gone, None, None, (0, 0)) == []
    assert plan_file(gone, "x", Stat(), (0, 0))[0]["action"] == "remove"


def test_diff_shows_content_but_never_a_secret():
    assert file_diff(item(), "old\n") == {"before_header": "/etc/kubeflat/x.conf",
                                          "after_header": "/etc/kubeflat/x.conf",
                                          "before": "old\n", "after": "a = 1\n"}
    secret = file_diff(item(secret=True, content="token: s3cr3t\n"), "token: old\n")
    assert "s3cr3t" not in str(secret) and "old" not in str(secret)
    assert secret["before"] == secret["after"] == SECRET_TEXT
    assert file_diff(item(secret=True), None)["before"] == ""


# --------------------------------------------------------------------------- sysctls
def test_sysctl_normalised_and_planned():
    s = validate_sysctl({"name": "net.ipv4.ip_forward", "value": 1})
    assert s == {"name": "net.ipv4.ip_forward", "value": "1", "denied": "fail"}
    assert plan_sysctl(s, "1\n") == []
    assert plan_sysctl(s, "0\n")[0]["detail"] == "0 -> 1"
    assert normalize_sysctl("4096\t87380   6291456\n") == "4096 87380 6291456"
    assert sysctl_path("net.bridge.bridge-nf-call-iptables") == \
        "/proc/sys/net/bridge/bridge-nf-call-iptables"


@pytest.mark.parametrize("bad, reason", [
    ({"name": "ip_forward", "value": 1}, "not a sysctl name"),
    ({"name": "net.ipv4.ip_forward; rm", "value": 1}, "not a sysctl name"),
    ({"name": "net.ipv4.ip_forward", "value": None}, "not a number or string"),
    ({"name": "net.ipv4.ip_forward", "value": True}, "not a number or string"),
    ({"name": "net.ipv4.ip_forward", "value": 1, "denied": "ignore"}, "fail or warn"),
])
def test_sysctl_refusals(bad, reason):
    with pytest.raises(ConvergeError) as exc:
        validate_sysctl(bad)
    assert reason in str(exc.value)


def test_missing_sysctl_is_refused_with_the_path():
    s = validate_sysctl({"name": "net.bridge.bridge-nf-call-iptables", "value": 1})
    with pytest.raises(ConvergeError) as exc:
        plan_sysctl(s, None)
    assert "/proc/sys/net/bridge/bridge-nf-call-iptables missing" in str(exc.value)


# --------------------------------------------------------------------------- packages
STATUS = """Package: containernetworking-plugins
Status: install ok installed
Architecture: amd64
Version: 1.1.1+ds1-3+b7
Description: standard networking plugins
 multi-line description

Package: runc
Status: deinstall ok config-files
Version: 1.1.5+ds1-1

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u9
"""


def test_installed_packages_reads_only_fully_installed():
    assert installed_packages(STATUS) == {"containernetworking-plugins": "1.1.1+ds1-3+b7",
                                          "libc6": "2.36-9+deb12u9"}
    assert installed_packages("") == {}


def test_only_missing_packages_are_installed():
    installed = installed_packages(STATUS)
    assert plan_packages(["containernetworking-plugins"], installed) == []
    assert plan_packages(["runc", "containernetworking-plugins"], installed) == [
        {"kind": "package", "name": "runc", "action": "install", "detail": ""}]


def test_package_names_are_checked():
    assert validate_packages(["containerd", "g++-12"]) == ["containerd", "g++-12"]
    with pytest.raises(ConvergeError):
        validate_packages(["containerd; reboot"])


# --------------------------------------------------------------------------- units, require
def test_units():
    u = validate_unit({"name": "kubeflat-pod-routes.service"})
    assert u["enabled"] is True
    assert plan_unit(u, enabled_now=True) == []
    assert plan_unit(u, enabled_now=False)[0]["action"] == "enable"
    with pytest.raises(ConvergeError):
        validate_unit({"name": "../../etc/passwd"})


def test_require_refuses_with_the_roles_hint(tmp_path):
    plugin = tmp_path / "bridge"
    req = validate_require({"path": str(plugin), "executable": True, "msg": "install the plugins"})
    with pytest.raises(ConvergeError) as exc:
        check_require(req, os.path.exists(str(plugin)), False, "w1")
    assert "w1: install the plugins" in str(exc.value)
    plugin.write_text("#!/bin/sh\n")
    with pytest.raises(ConvergeError):
        check_require(req, True, os.access(str(plugin), os.X_OK), "w1")
    plugin.chmod(0o755)
    check_require(req, True, os.access(str(plugin), os.X_OK), "w1")


def test_report_lines_name_host_item_and_mode():
    changes = [{"kind": "file", "name": "/etc/a", "action": "update", "detail": "content"},
               {"kind": "route", "name": "10.244.1.0/24 via 10.77.0.21", "action": "add",
                "detail": "node w1"}]
    assert report_lines("w2", changes, check_mode=False) == [
        "w2: update file /etc/a (content)",
        "w2: add route 10.244.1.0/24 via 10.77.0.21 (node w1)"]
    assert report_lines("w2", changes[:1], check_mode=True) == [
        "w2: would update file /etc/a (content)"]


def test_a_unit_to_disable_is_planned_only_when_enabled():
    u = validate_unit({"name": "kubeflat-pod-routes.service", "enabled": False})
    assert plan_unit(u, enabled_now=False) == []
    assert plan_unit(u, enabled_now=True)[0]["action"] == "disable"
    assert report_lines("w1", plan_unit(u, True), check_mode=True) == [
        "w1: would disable unit kubeflat-pod-routes.service"]


# --------------------------------------------------------------------------- node kinds
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import (  # noqa: E402
    FSTAB_COMMENT, active_swaps, fstab_swap_off, package_selections, plan_holds)

HELD = """Package: kubelet
Status: hold ok installed
Version: 1.37.0-1.1

Package: kubectl
Status: install ok installed
Version: 1.37.0-1.1
"""


def test_holds_only_for_installed_packages_not_held_yet():
    installed = installed_packages(HELD)
    selections = package_selections(HELD)
    assert selections == {"kubelet": "hold", "kubectl": "install"}
    assert installed == {"kubelet": "1.37.0-1.1", "kubectl": "1.37.0-1.1"}
    assert plan_holds(["kubelet", "kubectl", "kubeadm"], installed, selections) == [
        {"kind": "package", "name": "kubectl", "action": "hold", "detail": ""}]


def test_fstab_swap_lines_are_commented_once():
    fstab = ("UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n"
             "# /dev/sdb2 none swap sw 0 0\n")
    once = fstab_swap_off(fstab)
    assert once.splitlines()[1] == FSTAB_COMMENT + "/swapfile none swap sw 0 0"
    assert once.splitlines()[0] == "UUID=1 / ext4 defaults 0 1"
    assert once.splitlines()[2] == "# /dev/sdb2 none swap sw 0 0"
    assert fstab_swap_off(once) == once


def test_active_swaps():
    assert active_swaps("Filename\tType\tSize\tUsed\tPriority\n") == []
    assert active_swaps("Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n") == ["/swapfile"]


# --------------------------------------------------------------------------- directories (remove-node, reset)
def test_empty_kubeflat_dir_is_removed_once_its_files_go():
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import plan_dir, validate_dir
    d = validate_dir({"path": "/etc/kubeflat/"})
    assert d == {"path": "/etc/kubeflat"}
    going = {"/etc/kubeflat/pod-routes.batch"}
    assert plan_dir(d, ["pod-routes.batch"], going) == [
        {"kind": "dir", "name": "/etc/kubeflat", "action": "remove", "detail": "empty"}]
    assert plan_dir(d, [], set()) and plan_dir(d, None, going) == []


def test_dir_holding_anything_else_stays():
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import plan_dir, validate_dir
    d = validate_dir({"path": "/etc/kubeflat"})
    assert plan_dir(d, ["pod-routes.batch", "mine.txt"], {"/etc/kubeflat/pod-routes.batch"}) == []


@pytest.mark.parametrize("bad", ["/", "relative/dir", "/etc/../root", None])
def test_dir_refusals_name_the_item(bad):
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import validate_dir
    with pytest.raises(ConvergeError) as exc:
        validate_dir({"path": bad})
    assert exc.value.kind == "dir" and exc.value.name == bad


def test_the_original_is_kept_once_when_kubeflat_replaces_a_file():
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import BACKUP_DIR, plan_backup
    f = item(path="/etc/containerd/config.toml", backup=True)
    kept = plan_backup(f, "# the distribution's\n", backup_exists=False)
    assert kept == [{"kind": "file", "name": BACKUP_DIR + "/etc/containerd/config.toml",
                     "action": "backup", "detail": "original of /etc/containerd/config.toml"}]
    assert plan_backup(f, "# the distribution's\n", backup_exists=True) == []
    assert plan_backup(f, None, backup_exists=False) == []           # nothing to keep
    assert plan_backup(f, f["content"], backup_exists=False) == []   # not replaced
    assert plan_backup(item(), "other\n", backup_exists=False) == []  # not asked for
