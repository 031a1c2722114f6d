"""Unit tests for plugins/module_utils/kubeflat_owned.py (and its filter): the one list of what
kubeflat owns on a host, how remove-node/reset take it back, and the model after a node left."""
import base64
import copy
import os

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_owned
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_owned import (
    RemoveError, model_without, owned, removal_items, removal_names, unpinned_nodes)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import host_route_set
from ansible_collections.kubeflat.cluster.plugins.filter.remove import kubeflat_owned as owned_filter
from ansible_collections.kubeflat.cluster.plugins.filter.remove import kubeflat_removal_items, role_defaults

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SETTINGS = {"cluster_name": "lab", "distribution": "none", "cni": "static",
            "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12", "node_pod_prefix": 24,
            "host_networks": ["10.77.0.0/24"]}


def host(name, address, *groups, pod_cidr=None):
    return {"name": name, "address": address, "groups": list(groups), "pod_cidr": pod_cidr}


HOSTS = [
    host("cp1", "10.77.0.11", "kube_control_plane", "k8s_cluster"),
    host("cp2", "10.77.0.12", "kube_control_plane", "k8s_cluster", pod_cidr="10.244.9.0/24"),
    host("cp3", "10.77.0.13", "kube_control_plane", "k8s_cluster"),
    host("w1", "10.77.0.21", "kube_node", "k8s_cluster"),
    host("w2", "10.77.0.22", "kube_node", "k8s_cluster"),
    host("db1", "10.77.0.31", "k8s_outside"),
    host("spare", "10.77.0.99", "lab_spare"),
]


def model(**overrides):
    cfg = dict(SETTINGS, **overrides)
    return build_model(cfg, copy.deepcopy(HOSTS))


def paths(items, how=None):
    return [f["path"] for f in items["files"] if how is None or f["how"] == how]


# --------------------------------------------------------------------------- owned()
def test_static_node_owns_routes_conflist_sysctl_unit_bridge_and_verify_pod():
    items = owned(model(), "w1")
    assert paths(items) == [
        "/etc/cni/net.d/10-kubeflat.conflist",
        "/etc/iproute2/rt_protos.d/kubeflat.conf",
        "/etc/kubeflat/pod-routes.batch",
        "/etc/sysctl.d/90-kubeflat-cni-static.conf",
        "/etc/systemd/system/kubeflat-pod-routes.service",
        "/var/lib/cni/networks/kubeflat/last_reserved_ip.0",
        "/var/lib/cni/networks/kubeflat/lock",
    ]
    assert items["routes"] is True and items["units"] == ["kubeflat-pod-routes.service"]
    assert items["dirs"] == ["/var/lib/cni/networks/kubeflat", "/etc/kubeflat"]
    assert items["bridge"] == "cni0" and items["kubeadm"] is False
    assert items["verify_pod"] == {"name": "kubeflat-verify",
                                   "conflist": "/etc/cni/net.d/10-kubeflat.conflist",
                                   "cni_path": "/usr/lib/cni"}


def test_shared_directories_are_never_listed():
    items = owned(model(distribution="kubeadm"), "cp1")
    for shared in ("/etc/cni/net.d", "/etc/sysctl.d", "/etc/containerd", "/etc/iproute2",
                   "/etc/kubernetes", "/etc/kubernetes/manifests", "/etc/systemd/system",
                   "/var/lib/cni", "/var/lib/cni/networks", "/etc"):
        assert shared not in items["dirs"], shared


def test_outside_host_owns_only_its_routes_and_their_files():
    items = owned(model(), "db1")
    assert paths(items) == ["/etc/iproute2/rt_protos.d/kubeflat.conf",
                            "/etc/kubeflat/pod-routes.batch",
                            "/etc/systemd/system/kubeflat-pod-routes.service"]
    assert items["routes"] and items["bridge"] is None and items["verify_pod"] is None
    assert items["verify_unit"] == "kubeflat-verify-peer.service"


def test_a_host_kubeflat_does_not_manage_owns_nothing():
    items = owned(model(), "spare")
    assert items["files"] == [] and items["dirs"] == [] and not items["routes"]
    assert items["verify_unit"] is None


def test_flannel_node_keeps_its_routes_to_flannel():
    items = owned(model(cni="flannel"), "w1")
    assert items["routes"] is False and paths(items) == []


def test_kubeadm_node_owns_node_prep_and_kubeadm_files_and_restores_containerd():
    m = model(distribution="kubeadm")
    items = owned(m, "cp1", {"node_prep_registry_mirrors": [{"registry": "docker.io"}],
                             "kubeadm_config_dir": "/etc/kubernetes/kf"})
    assert paths(items, "restore") == ["/etc/containerd/config.toml"]
    got = paths(items, "delete")
    for path in ("/etc/modules-load.d/kubeflat.conf", "/etc/sysctl.d/90-kubeflat.conf",
                 "/etc/crictl.yaml", "/etc/containerd/certs.d/docker.io/hosts.toml",
                 "/etc/kubernetes/kf/kubeadm.yaml",
                 "/etc/kubernetes/kf/patches/kubeletconfiguration+strategic.yaml",
                 "/etc/kubernetes/kf/apiserver-lb/envoy.yaml",
                 "/etc/kubernetes/manifests/kubeflat-apiserver-lb.yaml",
                 "/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key"):
        assert path in got, path
    assert items["kubeadm"] is True
    assert "/etc/containerd/certs.d/docker.io" in items["dirs"]
    assert "/etc/kubernetes/kf/patches" in items["dirs"] and "/etc/kubernetes/kf" in items["dirs"]
    # Deepest first, so a parent is only looked at after its children went.
    assert items["dirs"].index("/etc/kubernetes/kf/patches") < items["dirs"].index("/etc/kubernetes/kf")
    # The CA is only pre-placed on the first control plane.
    assert "/etc/kubernetes/pki/ca.key" not in paths(owned(m, "cp2"))


def test_settings_follow_the_host_variables():
    items = owned(model(), "w1", {"cni_static_conf_dir": "/etc/cni/other",
                                  "cni_static_conflist_name": "05-x.conflist",
                                  "outside_routes_unit_name": "pods-routes",
                                  "cni_static_bridge": "kf0", "unrelated": 1})
    assert "/etc/cni/other/05-x.conflist" in paths(items)
    assert "/etc/systemd/system/pods-routes.service" in paths(items)
    assert items["units"] == ["pods-routes.service"] and items["bridge"] == "kf0"


# --------------------------------------------------------------------------- removal_items()
def test_removal_items_delete_disable_and_drop_every_route():
    args = removal_items(owned(model(), "w1"))
    assert {f["state"] for f in args["files"]} == {"absent"}
    assert args["units"] == [{"name": "kubeflat-pod-routes.service", "enabled": False}]
    assert args["routes"] == {"routes": [], "persist": False}
    assert args["dirs"][-1] == {"path": "/etc/kubeflat"} and args["left"] == []


def test_a_replaced_distribution_file_is_restored_from_its_original_or_left_and_said():
    items = owned(model(distribution="kubeadm"), "w1")
    args = removal_items(items)
    assert "/etc/containerd/config.toml" not in [f["path"] for f in args["files"]]
    assert "config.toml is left as it is" in args["left"][0]
    backup = kubeflat_owned.BACKUP_DIR + "/etc/containerd/config.toml"
    args = removal_items(items, {backup: "version = 2\n"})
    assert {"path": "/etc/containerd/config.toml", "content": "version = 2\n"} in args["files"]
    assert {"path": backup, "state": "absent"} in args["files"] and args["left"] == []
    for d in ("/var/lib/kubeflat/backup/etc/containerd", "/var/lib/kubeflat"):
        assert {"path": d} in args["dirs"]


def test_the_filter_reads_slurp_results():
    items = owned(model(distribution="kubeadm"), "w1")
    backup = kubeflat_owned.BACKUP_DIR + "/etc/containerd/config.toml"
    slurped = {"results": [{"item": backup, "content": base64.b64encode(b"v = 1\n").decode()}]}
    args = kubeflat_removal_items(items, slurped)
    assert {"path": "/etc/containerd/config.toml", "content": "v = 1\n"} in args["files"]
    args = kubeflat_removal_items(items, {"results": [{"item": backup, "failed": True}]})
    assert args["left"]


# --------------------------------------------------------------------------- removal_names()
@pytest.mark.parametrize("raw,needle", [
    ("", "no node given"), (None, "no node given"), ("w9", "not a node of this inventory"),
    ("db1", "is an outside host"), ("spare", "not a node"),
    ("cp1,cp2,cp3", "every control plane"), ("all", "not a node"),
])
def test_removal_names_refuse_naming_the_variable_and_value(raw, needle):
    with pytest.raises(RemoveError) as exc:
        removal_names(model(), raw)
    assert exc.value.var == "node" and needle in str(exc.value)
    assert str(exc.value).startswith("node=")


def test_removal_names_accept_one_or_several():
    assert removal_names(model(), "w2") == ["w2"]
    assert removal_names(model(), " w2, cp1 ,w2") == ["w2", "cp1"]
    assert removal_names(model(), ["w1"]) == ["w1"]


# --------------------------------------------------------------------------- model_without()
def test_model_without_keeps_every_other_pod_cidr_and_drops_its_routes():
    m = model(distribution="kubeadm")
    after = model_without(m, ["w1"])
    before_cidrs = {n["name"]: n["pod_cidr"] for n in m["nodes"] if n["name"] != "w1"}
    assert {n["name"]: n["pod_cidr"] for n in after["nodes"]} == before_cidrs
    assert "w1" not in after["node_names"] and "w1" not in after["workers"]
    assert [r["node"] for r in after["pod_routes"]] == ["cp1", "cp2", "cp3", "w2"]
    assert m["node_names"].count("w1") == 1           # the input is not changed
    # Everyone else's route set loses w1's pod CIDR and only that.
    w1_cidr = [n["pod_cidr"] for n in m["nodes"] if n["name"] == "w1"][0]
    for h in ("cp1", "w2", "db1"):
        old = host_route_set(m, h)
        new = host_route_set(after, h)
        assert [r for r in old if r["dest"] != w1_cidr] == new, h
    assert host_route_set(after, "w1") is None        # no longer kubeflat's to route


def test_model_without_a_control_plane_updates_api_backends_and_dns():
    m = model(distribution="kubeadm")
    after = model_without(m, ["cp2"])
    assert after["control_planes"] == ["cp1", "cp3"]
    assert after["apiserver"]["backends"] == ["10.77.0.11:6443", "10.77.0.13:6443"]
    assert after["cluster_dns"] == ["10.77.0.11", "10.77.0.13"]


def test_unpinned_nodes_are_named_with_their_current_cidr():
    m = model()
    names = unpinned_nodes(m, ["w1"])
    assert "cp2 (10.244.9.0/24)" not in names                   # declared: stays put
    assert any(n.startswith("w2 (") for n in names) and not any(n.startswith("w1") for n in names)


# --------------------------------------------------------------------------- one source of truth
def test_settings_defaults_agree_with_the_roles_defaults():
    defaults = {}
    for role in ("cni_static", "outside_routes", "node_prep", "kubeadm"):
        with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
            defaults.update(yaml.safe_load(handle))
    for name, value in kubeflat_owned.SETTINGS.items():
        assert defaults[name] == value, name
    assert role_defaults() == kubeflat_owned.SETTINGS


def test_verify_names_agree_with_the_verify_playbook():
    with open(os.path.join(ROOT, "playbooks", "verify.yml")) as handle:
        play_vars = yaml.safe_load(handle)[0]["vars"]
    assert play_vars["kubeflat_verify_pod"] == kubeflat_owned.VERIFY_POD
    assert play_vars["kubeflat_verify_unit"] + ".service" == kubeflat_owned.VERIFY_UNIT
    assert play_vars["kubeflat_verify_conflist"] == "/etc/cni/net.d/10-kubeflat.conflist"


def test_the_filter_overlays_host_variables_on_role_defaults():
    items = owned_filter(model(), "w1", {"cni_static_bridge": "kf1", "ansible_host": "x"})
    assert items["bridge"] == "kf1"
    assert "/etc/cni/net.d/10-kubeflat.conflist" in paths(items)
