"""Unit tests for plugins/module_utils/kubeflat_cni_static.py (static-mode conflist, CNI chain).

The conflist is also run for real by the integration tests (tests/integration/
test_flat_network.py), where the Debian CNI plugins make pods with it.
"""
import copy

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cni_static import (
    CniError, cni_env, plugin_config, pod_ipv4, static_conflist)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model

MODEL = build_model(
    {"cni": "static", "distribution": "none", "host_networks": ["10.77.0.0/24"]},
    [{"name": "cp1", "address": "10.77.0.11", "groups": ["kube_control_plane", "k8s_cluster"]},
     {"name": "w1", "address": "10.77.0.21", "groups": ["kube_node", "k8s_cluster"]}])


def test_conflist_for_a_node_uses_its_pod_cidr_and_never_masquerades():
    conf = static_conflist(MODEL, "w1")
    assert conf["cniVersion"] == "1.0.0" and conf["name"] == "kubeflat"
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "loopback"]
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == "cni0" and bridge["isGateway"] is True
    assert bridge["ipMasq"] is False
    assert bridge["ipam"] == {"type": "host-local",
                              "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}
    assert "mtu" not in bridge
    assert static_conflist(MODEL, "w1", bridge="br-pods", network_name="n1",
                           mtu=1450)["plugins"][0]["mtu"] == 1450


@pytest.mark.parametrize("kwargs,match", [
    ({"node_name": "db1"}, "not a cluster node"),
    ({"node_name": "w1", "bridge": "a-very-long-bridge-name"}, "cni_static_bridge"),
    ({"node_name": "w1", "bridge": "bad name"}, "cni_static_bridge"),
    ({"node_name": "w1", "network_name": "-x"}, "cni_static_network_name"),
    ({"node_name": "w1", "mtu": 100}, "cni_static_mtu"),
    ({"node_name": "w1", "mtu": True}, "cni_static_mtu"),
])
def test_conflist_refuses_bad_input(kwargs, match):
    with pytest.raises(CniError, match=match):
        static_conflist(MODEL, **kwargs)


def test_conflist_refuses_other_cni_modes():
    other = copy.deepcopy(MODEL)
    other["cni"] = "flannel"
    with pytest.raises(CniError, match="only for cni=static"):
        static_conflist(other, "w1")


def test_plugin_config_injects_name_version_and_prev_result():
    conf = static_conflist(MODEL, "cp1")
    first = plugin_config(conf, 0)
    assert first["name"] == "kubeflat" and first["cniVersion"] == "1.0.0"
    assert "prevResult" not in first and first["type"] == "bridge"
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.244.0.2/24"}]}
    assert plugin_config(conf, 2, prev)["prevResult"] == prev
    assert "name" not in conf["plugins"][0]  # the conflist itself is left untouched
    with pytest.raises(CniError, match="no plugin #3"):
        plugin_config(conf, 3)
    with pytest.raises(CniError, match="has no type"):
        plugin_config({"name": "x", "plugins": [{}]}, 0)


def test_pod_ipv4_reads_the_sandbox_interface_address():
    result = {"interfaces": [{"name": "cni0"}, {"name": "veth1"},
                             {"name": "eth0", "sandbox": "/run/netns/p"}],
              "ips": [{"address": "10.244.0.1/24", "interface": 0},
                      {"address": "fd00::5/64", "interface": 2},
                      {"address": "10.244.0.5/24", "interface": 2, "gateway": "10.244.0.1"}]}
    assert pod_ipv4(result) == "10.244.0.5"
    assert pod_ipv4({"ips": [{"address": "10.244.0.7/24"}]}) == "10.244.0.7"
    assert pod_ipv4({}) is None and pod_ipv4(None) is None


def test_cni_env_and_refusals():
    assert cni_env("ADD", "pod-1", "/run/netns/pod-1", "eth0", "/usr/lib/cni") == {
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "pod-1", "CNI_NETNS": "/run/netns/pod-1",
        "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
    with pytest.raises(CniError, match="CNI_COMMAND"):
        cni_env("VERSIONX", "p", "/n", "eth0", "/p")
    with pytest.raises(CniError, match="container id"):
        cni_env("ADD", "../etc", "/n", "eth0", "/p")
