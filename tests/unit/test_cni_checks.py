"""Unit tests for plugins/module_utils/kubeflat_cni_checks.py: each check passes on good
facts and fails on bad ones with a cause and a fix (never an exception)."""
import json

import pytest

from cni_fixtures import model
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cni_checks import (
    check_br_netfilter, check_cilium_status, check_cni_plugins, check_conflists,
    check_flannel_network, check_ip_forward, check_node_pod_cidrs, check_subnet_env,
    failure_message, parse_subnet_env, pod_cidr_assignments, requirements)

DIRS = ["/opt/cni/bin", "/usr/lib/cni"]


def failed(res, *words):
    assert res["ok"] is False
    assert res["cause"] and res["fix"]
    for word in words:
        assert word in res["cause"] + res["fix"], (word, res)
    return res


def test_requirements_per_cni():
    assert requirements("flannel") == {"plugins": ["bridge", "host-local", "loopback", "portmap"],
                                       "conflist": "10-flannel.conflist", "br_netfilter": True,
                                       "ip_forward": True}
    assert requirements("cilium", kube_proxy_replacement=True)["br_netfilter"] is False
    assert requirements("cilium", kube_proxy_replacement=False)["br_netfilter"] is True
    assert requirements("cilium", required_plugins=["x", "x"])["plugins"] == ["x"]
    with pytest.raises(ValueError):
        requirements("static")


def test_plugins_found_in_debian_dir():
    listing = {"/opt/cni/bin": None, "/usr/lib/cni": ["bridge", "host-local", "loopback",
                                                      "portmap", "vlan"]}
    res = check_cni_plugins("w1", DIRS, listing, requirements("flannel")["plugins"])
    assert res["ok"] and "bridge in /usr/lib/cni" in res["detail"]


def test_plugins_split_across_dirs_are_found():
    listing = {"/opt/cni/bin": ["flannel", "bridge"], "/usr/lib/cni": ["host-local", "loopback",
                                                                      "portmap"]}
    assert check_cni_plugins("w1", DIRS, listing, ["bridge", "portmap"])["ok"]


def test_missing_plugins_name_them_and_the_dirs():
    listing = {"/opt/cni/bin": [], "/usr/lib/cni": None}
    failed(check_cni_plugins("w1", DIRS, listing, ["bridge", "portmap"]),
           "w1", "bridge, portmap", "/opt/cni/bin (0 plugins)", "/usr/lib/cni (missing)",
           "containernetworking-plugins")


def test_conflists_before_install():
    assert check_conflists("w1", "/etc/cni/net.d", [], "10-flannel.conflist", False)["ok"]
    assert check_conflists("w1", "/etc/cni/net.d", ["10-flannel.conflist", "README"],
                           "10-flannel.conflist", False)["ok"]


def test_second_conflist_is_refused_with_the_file_to_remove():
    res = failed(check_conflists("w1", "/etc/cni/net.d",
                                 ["10-flannel.conflist", "05-bridge.conf"],
                                 "10-flannel.conflist", False),
                 "2 CNI configs", "05-bridge.conf", "wrong CNI", "/etc/cni/net.d/05-bridge.conf")
    assert "10-flannel.conflist" not in res["fix"].split("leave")[0]
    failed(check_conflists("w1", "/etc/cni/net.d",
                           ["10-flannel.conflist", "99-loopback.json"],
                           "10-flannel.conflist", False), "99-loopback.json")


def test_no_conflist_after_install_fails():
    failed(check_conflists("w1", "/etc/cni/net.d", [], "05-cilium.conflist", True),
           "no CNI config", "05-cilium.conflist")
    assert check_conflists("w1", "/etc/cni/net.d", ["05-cilium.conflist"],
                           "05-cilium.conflist", True)["ok"]


def test_br_netfilter_built_in_is_recognised():
    facts = {"sys_module": False, "proc_bridge": True, "nf_call_iptables": "1\n"}
    res = check_br_netfilter("w1", facts, True)
    assert res["ok"] and "built in" in res["detail"]


def test_br_netfilter_missing_or_off():
    failed(check_br_netfilter("w1", {"sys_module": False, "proc_bridge": False,
                                     "nf_call_iptables": None}, True), "modprobe br_netfilter")
    failed(check_br_netfilter("w1", {"sys_module": True, "proc_bridge": True,
                                     "nf_call_iptables": "0\n"}, True),
           "bridge-nf-call-iptables is 0", "sysctl -w")
    assert check_br_netfilter("w1", {}, False)["ok"]


def test_ip_forward():
    assert check_ip_forward("w1", "1\n")["ok"]
    failed(check_ip_forward("w1", "0\n"), "ip_forward is 0", "sysctl -w net.ipv4.ip_forward=1")
    failed(check_ip_forward("w1", None), "unreadable")
    assert check_ip_forward("w1", "0", required=False)["ok"]


def test_node_pod_cidrs_from_model_and_live():
    m = model()
    assert check_node_pod_cidrs(m)["ok"]
    live = [{"name": "cp1", "pod_cidr": "10.244.0.0/24"}, {"name": "w1", "pod_cidr": None},
            {"name": "w2", "pod_cidr": "10.244.2.0/24"}]
    failed(check_node_pod_cidrs(m, live), "w1", "pod cidr not assigned",
           "--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16")
    failed(check_node_pod_cidrs(m, live[:1]), "w1 (not registered)", "w2 (not registered)")
    live[1]["pod_cidr"] = "10.10.0.0/24"
    failed(check_node_pod_cidrs(m, live), "w1=10.10.0.0/24", "outside the cluster pod CIDR")
    live[1]["pod_cidr"] = "10.244.1.0/24"
    assert check_node_pod_cidrs(m, live)["ok"]
    live[1]["pod_cidr"] = "10.244.7.0/24"
    failed(check_node_pod_cidrs(m, live), "w1 has 10.244.7.0/24, the model 10.244.1.0/24",
           "kubeflat_node_pod_cidr")


def test_pod_cidr_assignments_only_for_registered_model_nodes_without_one():
    m = model()
    live = [{"name": "cp1", "pod_cidr": "10.244.0.0/24"}, {"name": "w1", "pod_cidr": None},
            {"name": "stranger", "pod_cidr": None}]
    assert pod_cidr_assignments(m, live) == [{"name": "w1", "pod_cidr": "10.244.1.0/24"}]
    assert pod_cidr_assignments(m, []) == []


def test_flannel_network_must_equal_pod_cidr():
    good = {"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}
    assert check_flannel_network(good, "10.244.0.0/16")["ok"]
    assert check_flannel_network(json.dumps(good), "10.244.0.0/16")["ok"]
    failed(check_flannel_network(dict(good, Network="10.245.0.0/16"), "10.244.0.0/16"),
           "10.245.0.0/16", "10.244.0.0/16")
    failed(check_flannel_network(dict(good, Backend={"Type": "vxlan"}), "10.244.0.0/16"),
           "'vxlan'", "host-gw")
    failed(check_flannel_network("{not json", "10.244.0.0/16"), "not valid JSON")
    failed(check_flannel_network({}, "10.244.0.0/16"), "None")


SUBNET_ENV = """FLANNEL_NETWORK=10.244.0.0/16
FLANNEL_SUBNET=10.244.1.1/24
FLANNEL_MTU=1500
FLANNEL_IPMASQ=false
"""


def test_subnet_env():
    assert parse_subnet_env(SUBNET_ENV)["FLANNEL_SUBNET"] == "10.244.1.1/24"
    assert check_subnet_env("w1", SUBNET_ENV, "10.244.0.0/16", "10.244.1.0/24", False)["ok"]
    assert check_subnet_env("w1", SUBNET_ENV, "10.244.0.0/16")["ok"]
    failed(check_subnet_env("w1", None, "10.244.0.0/16"), "missing", "no such file",
           "kubectl -n kube-flannel logs")
    failed(check_subnet_env("w1", SUBNET_ENV, "10.244.0.0/16", "10.244.2.0/24"),
           "spec.podCIDR is 10.244.2.0/24")
    failed(check_subnet_env("w1", SUBNET_ENV.replace("0.0/16", "0.0/12"), "10.244.0.0/16"),
           "FLANNEL_NETWORK=10.244.0.0/12 but the cluster pod CIDR is 10.244.0.0/16")
    failed(check_subnet_env("w1", SUBNET_ENV, "10.244.0.0/16", ip_masq=True), "FLANNEL_IPMASQ")
    failed(check_subnet_env("w1", "FLANNEL_NETWORK=10.244.0.0/16\n", "10.244.0.0/16"),
           "FLANNEL_SUBNET")


def status(state="Ok", mode="True"):
    return {"cilium": {"state": state}, "kube-proxy-replacement": {"mode": mode}}


def test_cilium_status():
    assert check_cilium_status(status())["ok"]
    assert check_cilium_status(json.dumps(status()))["ok"]
    assert check_cilium_status(status(mode="False"), expect_kpr=False)["ok"]
    failed(check_cilium_status(status(mode="False")), "not active", "kubeProxyReplacement")
    failed(check_cilium_status(status(mode="True"), expect_kpr=False), "is active")
    failed(check_cilium_status(status(state="Failure")), "'Failure'", "cilium-agent")
    failed(check_cilium_status(None), "did not answer")
    failed(check_cilium_status("garbage"), "not JSON")


def test_failure_message_lists_cause_and_fix():
    results = [check_ip_forward("w1", "0"), check_ip_forward("w2", "1")]
    msg = failure_message(results)
    assert msg.startswith("[ip_forward] w1:") and "fix: sysctl" in msg and "w2" not in msg
    assert failure_message(results[1:]) == ""


def test_filters_serialise_deterministically_and_refuse_bad_options():
    import yaml
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kubeflat.cluster.plugins.filter import cni
    objs = cni.cni_flannel_manifest(model(), {})
    text = cni.cni_yaml_documents(objs)
    assert text == cni.cni_yaml_documents(cni.cni_flannel_manifest(model(), {}))
    assert list(yaml.safe_load_all(text)) == objs
    assert "net-conf.json: |" in text  # embedded JSON stays readable
    assert cni.cni_shell_join(["helm", "--values", "/a b/v.yaml"]) == "helm --values '/a b/v.yaml'"
    with pytest.raises(AnsibleFilterError, match="cni_flannel_ip_masq"):
        cni.cni_flannel_manifest(model(), {"ip_masq": "yes"})
    with pytest.raises(AnsibleFilterError, match="cni_cilium_lb_ipam_pools"):
        cni.cni_cilium_values(model(cni="cilium"),
                              {"lb_ipam_pools": [{"name": "p", "blocks": [{"cidr": "10.244.0.0/24"}]}]})
    assert cni.cni_live_nodes([{"metadata": {"name": "w1"}, "spec": {}}]) == [
        {"name": "w1", "pod_cidr": None}]
