"""Unit tests for plugins/module_utils/kubeflat_cilium.py: chart values and LB IPAM as data.

Values are validated against the Cilium 1.19.2 chart's values.schema.json, and every key we
set is checked to exist in the chart's values.yaml (../shared/reference/cilium/v1.19.2).
"""
import json
import os

import jsonschema
import pytest
import yaml

from cni_fixtures import REFERENCE, model
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cilium import (
    CiliumError, build_lb_ipam_objects, build_values, deep_merge, install_argv, repo_add_argv,
    validate_lb_pools, validate_options)

CHART = os.path.join(REFERENCE, "cilium", "v1.19.2")
# Keys the chart documents only as comments in values.yaml (checked to be there as text).
COMMENTED_KEYS = {("ipMasqAgent", "config"): ["# config:", "#   nonMasqueradeCIDRs:",
                                              "#   masqLinkLocal:"],
                  ("devices",): ['# devices: ""']}


@pytest.fixture(scope="module")
def schema():
    with open(os.path.join(CHART, "values.schema.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def chart_values():
    with open(os.path.join(CHART, "values.yaml")) as handle:
        text = handle.read()
    return yaml.safe_load(text), text


def assert_keys_exist(values, chart, text, path=()):
    for key, value in values.items():
        here = path + (key,)
        if here in COMMENTED_KEYS:
            for line in COMMENTED_KEYS[here]:
                assert line in text, "%s is not documented in values.yaml" % ".".join(here)
            continue
        assert isinstance(chart, dict) and key in chart, \
            "%s is not a value of the Cilium chart" % ".".join(here)
        if isinstance(value, dict) and chart[key] not in ({}, None):
            assert_keys_exist(value, chart[key], text, here)


def cilium_model(**kw):
    kw.setdefault("cni", "cilium")
    return model(**kw)


POOLS = [{"name": "lan", "blocks": [{"cidr": "10.77.0.192/27"},
                                     {"start": "10.77.0.100", "stop": "10.77.0.110"}]}]
VARIANTS = [
    {},
    {"ipam_mode": "cluster-pool"},
    {"masquerade": True, "hubble": True, "hubble_relay": True, "hubble_ui": True},
    {"lb_ipam_pools": POOLS, "l2_announcements": True, "l2_interfaces": ["^eth"],
     "devices": ["eth0"]},
    {"image_registry": "registry.local:5000/mirror"},
]


@pytest.mark.parametrize("options", VARIANTS)
def test_values_validate_against_the_chart_schema_and_keys_exist(options, schema, chart_values):
    values = build_values(cilium_model(), options)
    jsonschema.validate(values, schema)
    assert_keys_exist(values, chart_values[0], chart_values[1])


def test_native_routing_values_come_from_the_model():
    m = cilium_model(pod_cidr="10.32.0.0/16")
    values = build_values(m)
    assert values["routingMode"] == "native"
    assert values["ipv4NativeRoutingCIDR"] == "10.32.0.0/16"
    assert values["autoDirectNodeRoutes"] is True
    assert values["kubeProxyReplacement"] is True and m["kube_proxy_replacement"] is True
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("127.0.0.1", 7443)
    assert values["ipam"] == {"mode": "kubernetes"}
    assert values["enableIPv4Masquerade"] is False
    assert values["hubble"]["enabled"] is False


def test_kube_proxy_replacement_follows_the_model():
    values = build_values(cilium_model(kube_proxy_replacement=False))
    assert values["kubeProxyReplacement"] is False


def test_api_endpoint_from_control_plane_endpoint_and_talos():
    values = build_values(cilium_model(control_plane_endpoint="api.lab.example:6443"))
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("api.lab.example", 6443)
    talos = build_values(cilium_model(distribution="talos"))
    assert (talos["k8sServiceHost"], talos["k8sServicePort"]) == ("10.77.0.11", 6443)
    assert talos["cgroup"] == {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}
    assert "SYS_MODULE" not in talos["securityContext"]["capabilities"]["ciliumAgent"]


def test_cluster_pool_ipam_splits_the_pod_cidr_per_node_prefix():
    values = build_values(cilium_model(node_pod_prefix=25), {"ipam_mode": "cluster-pool"})
    assert values["ipam"]["operator"] == {"clusterPoolIPv4PodCIDRList": ["10.244.0.0/16"],
                                          "clusterPoolIPv4MaskSize": 25}


def test_masquerade_keeps_pod_sources_towards_host_networks():
    values = build_values(cilium_model(), {"masquerade": True})
    assert values["enableIPv4Masquerade"] is True and values["bpf"]["masquerade"] is True
    cidrs = values["ipMasqAgent"]["config"]["nonMasqueradeCIDRs"]
    assert cidrs == ["10.244.0.0/16", "10.77.0.0/24"]


def test_registry_override_replaces_every_image_repository():
    values = build_values(cilium_model(), {"image_registry": "mirror.local"})
    for path in (("image",), ("operator", "image"), ("envoy", "image"),
                 ("hubble", "relay", "image")):
        node = values
        for key in path:
            node = node[key]
        assert node["repository"].startswith("mirror.local/cilium/")
        assert node["useDigest"] is False


def test_extra_values_are_merged_last():
    values = build_values(cilium_model(), {"extra_values": {"hubble": {"enabled": True},
                                                            "debug": {"enabled": True}}})
    assert values["hubble"] == {"enabled": True, "relay": {"enabled": False},
                                "ui": {"enabled": False}}
    assert values["debug"] == {"enabled": True}
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


def test_lb_ipam_objects():
    objs = build_lb_ipam_objects(cilium_model(), {"lb_ipam_pools": POOLS,
                                                  "l2_announcements": True,
                                                  "l2_interfaces": ["^eth"]})
    assert [(o["apiVersion"], o["kind"]) for o in objs] == [
        ("cilium.io/v2", "CiliumLoadBalancerIPPool"),
        ("cilium.io/v2alpha1", "CiliumL2AnnouncementPolicy")]
    assert objs[0]["spec"]["blocks"] == [{"cidr": "10.77.0.192/27"},
                                         {"start": "10.77.0.100", "stop": "10.77.0.110"}]
    assert objs[1]["spec"] == {"loadBalancerIPs": True, "externalIPs": True,
                               "interfaces": ["^eth"]}
    assert build_lb_ipam_objects(cilium_model()) == []


@pytest.mark.parametrize("block,reason", [
    ({"cidr": "10.244.5.0/24"}, "kubeflat_pod_cidr"),
    ({"cidr": "10.96.0.0/24"}, "kubeflat_service_cidr"),
    ({"cidr": "10.77.0.16/28"}, "host w1"),           # contains 10.77.0.21
    ({"start": "10.77.0.30", "stop": "10.77.0.40"}, "host db1"),  # outside host
    ({"start": "10.77.0.11"}, "host cp1"),
    ({"start": "10.77.0.50", "stop": "10.77.0.40"}, "stop is before start"),
    ({"cidr": "10.77.0.1/24"}, "host bits"),
    ({"cidr": "10.77.0.0/24", "start": "10.77.0.1"}, "a block is"),
])
def test_pools_overlapping_nodes_pods_or_services_are_refused(block, reason):
    with pytest.raises(CiliumError) as err:
        validate_lb_pools(cilium_model(), [{"name": "p", "blocks": [block]}])
    assert reason in str(err.value)
    assert "cni_cilium_lb_ipam_pools[0].blocks[0]" in str(err.value)


def test_pools_overlapping_each_other_or_reusing_names_are_refused():
    with pytest.raises(CiliumError, match="overlaps cni_cilium_lb_ipam_pools\\[0\\]"):
        validate_lb_pools(cilium_model(), [{"name": "a", "blocks": [{"cidr": "10.77.0.192/27"}]},
                                           {"name": "b", "blocks": [{"cidr": "10.77.0.200/29"}]}])
    with pytest.raises(CiliumError, match="used twice"):
        validate_lb_pools(cilium_model(), [{"name": "a", "blocks": [{"cidr": "10.0.1.0/24"}]},
                                           {"name": "a", "blocks": [{"cidr": "10.0.2.0/24"}]}])


def test_l2_announcement_pools_must_sit_in_a_host_network():
    pools = [{"name": "far", "blocks": [{"cidr": "192.168.99.0/28"}]}]
    assert validate_lb_pools(cilium_model(), pools, l2_announcements=False)
    with pytest.raises(CiliumError, match="not inside any of kubeflat_host_networks"):
        validate_lb_pools(cilium_model(), pools, l2_announcements=True)
    with pytest.raises(CiliumError, match="broadcast address"):
        validate_lb_pools(cilium_model(), [{"name": "x", "blocks": [{"cidr": "10.77.0.240/28"}]}],
                          l2_announcements=True)


@pytest.mark.parametrize("options,var", [
    ({"ipam_mode": "eni"}, "cni_cilium_ipam_mode"),
    ({"masquerade": "no"}, "cni_cilium_masquerade"),
    ({"version": "latest"}, "cni_cilium_version"),
    ({"hubble_relay": True}, "cni_cilium_hubble"),
    ({"hubble": True, "hubble_ui": True}, "cni_cilium_hubble_relay"),
    ({"l2_announcements": True}, "cni_cilium_l2_announcements"),  # no pools
    ({"l2_interfaces": ["(bad"]}, "cni_cilium_l2_interfaces"),
    ({"image_registry": "http://x"}, "cni_cilium_image_registry"),
    ({"extra_values": []}, "cni_cilium_extra_values"),
    ({"tunnel": "vxlan"}, "cni_cilium_tunnel"),
    ({"lb_ipam_pools": {"name": "x"}}, "cni_cilium_lb_ipam_pools"),
])
def test_refused_options_name_the_variable(options, var):
    with pytest.raises(CiliumError) as err:
        validate_options(cilium_model(), options)
    assert err.value.var == var


def test_masquerade_and_l2_need_kube_proxy_replacement():
    m = cilium_model(kube_proxy_replacement=False)
    with pytest.raises(CiliumError, match="kube-proxy replacement"):
        validate_options(m, {"masquerade": True})
    with pytest.raises(CiliumError, match="kube-proxy replacement"):
        validate_options(m, {"l2_announcements": True, "lb_ipam_pools": POOLS})


def test_install_command_is_exact():
    assert install_argv({}, "/r/network/cilium-values.yaml") == [
        "helm", "upgrade", "--install", "cilium", "cilium/cilium", "--version", "1.19.2",
        "--namespace", "kube-system", "--values", "/r/network/cilium-values.yaml"]
    argv = install_argv({"chart_ref": "/charts/cilium-1.19.2.tgz"}, "v.yaml",
                        helm="/usr/local/bin/helm", kubeconfig="/k/admin.conf")
    assert argv[0] == "/usr/local/bin/helm" and argv[-2:] == ["--kubeconfig", "/k/admin.conf"]
    assert repo_add_argv({}) == ["helm", "repo", "add", "cilium", "https://helm.cilium.io/"]
    assert repo_add_argv({"chart_ref": "/charts/cilium-1.19.2.tgz"}) is None
    assert repo_add_argv({"chart_ref": "oci://mirror/cilium"}) is None
