"""Unit tests for plugins/module_utils/kubeflat_model.py: the model and what it refuses."""
import copy

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import (
    ModelError, build_model, host_inputs, peer_routes)

SETTINGS = {
    "cluster_name": "lab",
    "distribution": "kubeadm",
    "cni": "static",
    "pod_cidr": "10.244.0.0/16",
    "service_cidr": "10.96.0.0/12",
    "node_pod_prefix": 24,
    "host_networks": ["10.77.0.0/24"],
}


def host(name, address, *groups, pod_cidr=None):
    return {"name": name, "address": address, "groups": list(groups), "pod_cidr": pod_cidr}


HOSTS = [
    host("cp1", "10.77.0.11", "kube_control_plane", "k8s_cluster"),
    host("w1", "10.77.0.21", "kube_node", "k8s_cluster"),
    host("w2", "10.77.0.22", "kube_node", "k8s_cluster"),
    host("db1", "10.77.0.31", "k8s_outside"),
]


def build(settings=None, hosts=None, **overrides):
    cfg = dict(SETTINGS)
    cfg.update(settings or {})
    cfg.update(overrides)
    return build_model(cfg, copy.deepcopy(HOSTS if hosts is None else hosts))


def test_lab_model_allocates_pod_cidrs_in_name_order():
    model = build()
    assert [(n["name"], n["pod_cidr"]) for n in model["nodes"]] == [
        ("cp1", "10.244.0.0/24"), ("w1", "10.244.1.0/24"), ("w2", "10.244.2.0/24")]
    assert model["control_planes"] == ["cp1"]
    assert model["workers"] == ["w1", "w2"]
    assert [o["name"] for o in model["outside_hosts"]] == ["db1"]
    assert model["l2_adjacent"] is True
    assert model["dns_service_ip"] == "10.96.0.10"
    assert model["apiserver"]["endpoint"] == "127.0.0.1:7443"
    assert model["apiserver"]["backends"] == ["10.77.0.11:6443"]


def test_declared_pod_cidrs_are_kept_and_allocation_skips_them():
    hosts = copy.deepcopy(HOSTS)
    hosts[1]["pod_cidr"] = "10.244.0.0/24"  # w1 takes the first subnet
    model = build(hosts=hosts)
    cidrs = {n["name"]: (n["pod_cidr"], n["pod_cidr_source"]) for n in model["nodes"]}
    assert cidrs["w1"] == ("10.244.0.0/24", "declared")
    assert cidrs["cp1"] == ("10.244.1.0/24", "allocated")
    assert cidrs["w2"] == ("10.244.2.0/24", "allocated")


def test_allocation_is_deterministic_regardless_of_inventory_order():
    assert build(hosts=list(reversed(HOSTS))) == build()


def test_peer_routes_exclude_the_node_itself():
    model = build()
    routes = peer_routes(model, "w1")
    assert {r["node"] for r in routes} == {"cp1", "w2"}
    assert {"dest": "10.244.2.0/24", "via": "10.77.0.22", "node": "w2"} in routes


def test_pod_routes_and_gateways():
    model = build()
    assert model["pod_routes"][0] == {"dest": "10.244.0.0/24", "via": "10.77.0.11", "node": "cp1"}
    assert model["nodes"][0]["pod_gateway"] == "10.244.0.1"


def test_ha_with_three_control_planes():
    hosts = [host("cp%d" % i, "10.77.0.1%d" % i, "kube_control_plane") for i in (1, 2, 3)]
    model = build(hosts=hosts, control_plane_ha=True)
    assert model["control_plane_ha"] is True
    assert len(model["apiserver"]["backends"]) == 3


def test_talos_endpoint_defaults_to_first_control_plane():
    model = build(distribution="talos")
    assert model["apiserver"]["endpoint"] == "10.77.0.11:6443"


def test_explicit_endpoint_is_parsed():
    model = build(control_plane_endpoint="https://api.example.internal:8443")
    assert model["apiserver"]["endpoint_host"] == "api.example.internal"
    assert model["apiserver"]["endpoint_port"] == 8443


def test_distribution_none_allows_no_control_plane():
    hosts = [h for h in HOSTS if h["name"] != "cp1"]
    model = build(hosts=hosts, distribution="none")
    assert model["control_planes"] == []


def test_cross_subnet_allowed_for_routed_cni_only_when_not_direct():
    hosts = copy.deepcopy(HOSTS)
    hosts[2]["address"] = "10.77.1.22"
    # No CNI of kubeflat supports non-adjacent nodes: all three route directly.
    with pytest.raises(ModelError) as exc:
        build(hosts=hosts, host_networks=["10.77.0.0/24", "10.77.1.0/24"])
    assert "w2" in str(exc.value) and "not adjacent" in str(exc.value)


def test_host_inputs_prefers_node_address_then_ansible_host():
    out = host_inputs([
        {"inventory_hostname": "a", "group_names": ["kube_node"], "ansible_host": "10.0.0.1",
         "kubeflat_node_address": "10.0.0.9", "kubeflat_node_pod_cidr": "10.244.3.0/24"},
        {"inventory_hostname": "10.0.0.2", "group_names": ["k8s_outside"]},
        {"inventory_hostname": "c", "group_names": []},
    ])
    assert out[0] == {"name": "a", "groups": ["kube_node"], "address": "10.0.0.9",
                      "pod_cidr": "10.244.3.0/24"}
    assert out[1]["address"] == "10.0.0.2"
    assert out[2]["address"] is None


# --- what the model must refuse: (overrides, hosts transform, variable named, words) -------

def _with(index, **changes):
    def transform(hosts):
        hosts[index].update(changes)
        return hosts
    return transform


def _add(*new):
    def transform(hosts):
        return hosts + list(new)
    return transform


def _drop(name):
    def transform(hosts):
        return [h for h in hosts if h["name"] != name]
    return transform


def _cps(count):
    def transform(hosts):
        return [host("cp%d" % i, "10.77.0.%d" % (10 + i), "kube_control_plane")
                for i in range(1, count + 1)] + hosts[1:]
    return transform


REFUSALS = [
    ("invalid pod CIDR", {"pod_cidr": "10.244.0.0/33"}, None, "kubeflat_pod_cidr", "invalid"),
    ("pod CIDR not a CIDR", {"pod_cidr": "10.244.0.0"}, None, "kubeflat_pod_cidr", "not a CIDR"),
    ("pod CIDR host bits", {"pod_cidr": "10.244.1.0/16"}, None, "kubeflat_pod_cidr", "host bits"),
    ("IPv6 pod CIDR", {"pod_cidr": "fd00::/48"}, None, "kubeflat_pod_cidr", "IPv4"),
    ("service CIDR host bits", {"service_cidr": "10.96.0.1/12"}, None, "kubeflat_service_cidr",
     "host bits"),
    ("pod/service overlap", {"service_cidr": "10.244.128.0/17"}, None, "kubeflat_service_cidr",
     "overlaps kubeflat_pod_cidr"),
    ("service CIDR too large", {"service_cidr": "172.32.0.0/11"}, None, "kubeflat_service_cidr",
     "larger than /12"),
    ("service CIDR too small", {"service_cidr": "10.96.0.0/29"}, None, "kubeflat_service_cidr",
     "too small"),
    ("pod CIDR collides with host network", {"host_networks": ["10.244.5.0/24"]}, None,
     "kubeflat_pod_cidr", "collides with host network"),
    ("service CIDR collides with host network", {"host_networks": ["10.96.0.0/24"]}, None,
     "kubeflat_service_cidr", "collides with host network"),
    ("host networks overlap", {"host_networks": ["10.77.0.0/24", "10.77.0.128/25"]}, None,
     "kubeflat_host_networks[1]", "overlaps"),
    ("no host networks", {"host_networks": []}, None, "kubeflat_host_networks", "non-empty"),
    ("node prefix not longer than pod prefix", {"node_pod_prefix": 16}, None,
     "kubeflat_node_pod_prefix", "longer than"),
    ("node prefix not an integer", {"node_pod_prefix": "24x"}, None, "kubeflat_node_pod_prefix",
     "integer"),
    ("more nodes than pod subnets", {"pod_cidr": "10.244.0.0/23"}, None,
     "kubeflat_node_pod_prefix", "gives 2 node subnets, but there are 3 nodes"),
    ("unknown CNI", {"cni": "calico"}, None, "kubeflat_cni", "must be one of"),
    ("unknown distribution", {"distribution": "k3s"}, None, "kubeflat_distribution",
     "must be one of"),
    ("bad cluster name", {"cluster_name": "Prod_1"}, None, "kubeflat_cluster_name", "DNS label"),
    ("bad cluster domain", {"cluster_domain": ".local"}, None, "kubeflat_cluster_domain",
     "DNS domain"),
    ("lb port equals apiserver port", {"apiserver_lb_port": 6443}, None,
     "kubeflat_apiserver_lb_port", "must differ"),
    ("empty control plane group", {}, _drop("cp1"), "kube_control_plane", "no control plane"),
    ("even number of control planes with HA", {"control_plane_ha": True}, _cps(2),
     "kubeflat_control_plane_ha", "odd number"),
    ("HA with a single control plane", {"control_plane_ha": True}, None,
     "kubeflat_control_plane_ha", "odd number"),
    ("several control planes without HA", {"control_plane_ha": False}, _cps(3),
     "kubeflat_control_plane_ha", "HA is off"),
    ("duplicate node address", {}, _with(2, address="10.77.0.21"), "ansible_host",
     "used by both w1 and w2"),
    ("node address not an address", {}, _with(1, address="w1.example"), "ansible_host of w1",
     "not an IPv4"),
    ("node without address", {}, _with(1, address=None), "ansible_host", "no address"),
    ("node outside every host network", {}, _with(1, address="10.78.0.5"), "ansible_host",
     "none of kubeflat_host_networks"),
    ("node address is the network address", {}, _with(1, address="10.77.0.0"), "ansible_host",
     "network or broadcast"),
    ("declared pod CIDR outside cluster pod CIDR", {}, _with(1, pod_cidr="10.245.0.0/24"),
     "kubeflat_node_pod_cidr of w1", "outside kubeflat_pod_cidr"),
    ("declared pod CIDR with the wrong prefix", {}, _with(1, pod_cidr="10.244.0.0/25"),
     "kubeflat_node_pod_cidr of w1", "prefix must be /24"),
    ("declared pod CIDRs overlap", {}, lambda h: _with(2, pod_cidr="10.244.7.0/24")(
        _with(1, pod_cidr="10.244.7.0/24")(h)), "kubeflat_node_pod_cidr of w2",
     "overlaps the pod CIDR 10.244.7.0/24 of node w1"),
    ("declared pod CIDR host bits", {}, _with(1, pod_cidr="10.244.7.1/24"),
     "kubeflat_node_pod_cidr of w1", "host bits"),
    ("pod CIDR on an outside host", {}, _with(3, pod_cidr="10.244.9.0/24"),
     "kubeflat_node_pod_cidr", "not a cluster node"),
    ("outside host that is also a node", {}, _with(3, groups=["k8s_outside", "kube_node"]),
     "groups", "both a cluster node"),
    ("host listed twice", {}, _add(host("w1", "10.77.0.40", "kube_node")), "inventory_hostname",
     "listed twice"),
    ("k8s_cluster member without a role group", {}, _add(host("x1", "10.77.0.40", "k8s_cluster")),
     "groups", "neither"),
    ("host-gw across subnets", {"cni": "flannel", "host_networks": ["10.77.0.0/24", "10.77.1.0/24"]},
     _with(2, address="10.77.1.22"), "kubeflat_cni", "flannel host-gw needs every node on one L2"),
    ("static mode across subnets", {"host_networks": ["10.77.0.0/24", "10.77.1.0/24"]},
     _with(2, address="10.77.1.22"), "kubeflat_cni", "nodes w2 are not adjacent"),
    ("node address inside the pod CIDR", {"host_networks": ["10.77.0.0/24", "10.200.0.0/24"],
                                         "pod_cidr": "10.200.0.0/16"}, None, "kubeflat_pod_cidr",
     "collides"),
    ("bad endpoint port", {"control_plane_endpoint": "api:99999"}, None,
     "kubeflat_control_plane_endpoint", "between 1 and 65535"),
]


@pytest.mark.parametrize("label,overrides,transform,var,words", REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_refuses_bad_input_naming_the_variable(label, overrides, transform, var, words):
    hosts = copy.deepcopy(HOSTS)
    if transform:
        hosts = transform(hosts)
    with pytest.raises(ModelError) as exc:
        build(overrides, hosts=hosts)
    assert exc.value.var == var, label
    assert words in str(exc.value), str(exc.value)
    assert var in str(exc.value)


def test_there_are_at_least_25_distinct_refusals():
    assert len({r[0] for r in REFUSALS}) >= 25


def test_kube_proxy_replacement_follows_cilium():
    assert build(cni="cilium")["kube_proxy_replacement"] is True
    assert build(cni="cilium", kube_proxy_replacement=False)["kube_proxy_replacement"] is False
    assert build()["kube_proxy_replacement"] is False


def test_kube_proxy_replacement_refused_without_cilium():
    with pytest.raises(ModelError) as exc:
        build(cni="flannel", kube_proxy_replacement=True)
    assert exc.value.var == "kubeflat_kube_proxy_replacement"


# --- cluster DNS (kubeflat_dns_mode) ---------------------------------------------------------

HA_HOSTS = [host("cp%d" % i, "10.77.0.1%d" % i, "kube_control_plane", "k8s_cluster")
            for i in (1, 2, 3, 4, 5)] + [host("w1", "10.77.0.21", "kube_node", "k8s_cluster")]


def test_pods_resolve_through_the_control_plane_addresses_by_default():
    model = build()
    assert model["dns_mode"] == "control_planes"
    assert model["cluster_dns"] == ["10.77.0.11"]
    assert model["dns_service_ip"] == "10.96.0.10"  # still computed (kube-dns Service option)


def test_control_plane_dns_takes_the_first_three_control_planes_in_name_order():
    model = build(hosts=list(reversed(HA_HOSTS)))
    assert model["cluster_dns"] == ["10.77.0.11", "10.77.0.12", "10.77.0.13"]


def test_service_dns_mode_keeps_the_vip():
    model = build(dns_mode="service")
    assert model["dns_mode"] == "service"
    assert model["cluster_dns"] == ["10.96.0.10"]


def test_dns_mode_auto_falls_back_to_the_vip_without_control_planes():
    # distribution none may list no control plane: nothing to point pods at but the VIP.
    hosts = [h for h in HOSTS if h["name"] != "cp1"]
    model = build(hosts=hosts, distribution="none")
    assert (model["dns_mode"], model["cluster_dns"]) == ("service", ["10.96.0.10"])


def test_control_plane_dns_refused_without_control_planes():
    hosts = [h for h in HOSTS if h["name"] != "cp1"]
    with pytest.raises(ModelError) as exc:
        build(hosts=hosts, distribution="none", dns_mode="control_planes")
    assert exc.value.var == "kubeflat_dns_mode"
    assert "kube_control_plane is empty" in str(exc.value)
    assert "kubeflat_dns_mode: service" in str(exc.value)


def test_unknown_dns_mode_refused():
    with pytest.raises(ModelError) as exc:
        build(dns_mode="vip")
    assert exc.value.var == "kubeflat_dns_mode"
    assert "'vip'" in str(exc.value) and "control_planes, service" in str(exc.value)
