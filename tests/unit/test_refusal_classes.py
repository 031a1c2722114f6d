"""Refusal classes of issue 14: special-purpose address ranges and invalid DNS names.

One case per class; each asserts that the variable and the value appear in the message, so a
user reading the error knows what to change.
"""
import copy
import ipaddress

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import UNUSABLE_NETWORKS, special_purpose
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import ModelError, build_model
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_names import label_problem, name_problem
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_catalog import spec_settings, validate_catalog
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import SpecError

SETTINGS = {"cluster_name": "lab", "distribution": "kubeadm", "cni": "static",
            "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12",
            "node_pod_prefix": 24, "host_networks": ["10.77.0.0/24"]}
HOSTS = [
    {"name": "cp1", "address": "10.77.0.11", "groups": ["kube_control_plane"]},
    {"name": "w1", "address": "10.77.0.21", "groups": ["kube_node"]},
    {"name": "db1", "address": "10.77.0.31", "groups": ["k8s_outside"]},
]


def _host(index, **changes):
    def transform(hosts):
        hosts[index].update(changes)
        return hosts
    return transform


# (label, settings overrides, hosts transform, variable named, value named, words)
CASES = [
    # --- IANA special-purpose ranges ---------------------------------------------------
    ("pod CIDR in loopback", {"pod_cidr": "127.16.0.0/16"}, None,
     "kubeflat_pod_cidr", "127.16.0.0/16", "loopback"),
    ("pod CIDR in link-local", {"pod_cidr": "169.254.0.0/16"}, None,
     "kubeflat_pod_cidr", "169.254.0.0/16", "link-local"),
    ("pod CIDR in multicast", {"pod_cidr": "239.1.0.0/16"}, None,
     "kubeflat_pod_cidr", "239.1.0.0/16", "multicast"),
    ("pod CIDR in this-network", {"pod_cidr": "0.0.0.0/8"}, None,
     "kubeflat_pod_cidr", "0.0.0.0/8", "this network"),
    ("pod CIDR in reserved 240/4", {"pod_cidr": "240.0.0.0/16"}, None,
     "kubeflat_pod_cidr", "240.0.0.0/16", "reserved"),
    ("pod CIDR overlapping link-local", {"pod_cidr": "168.0.0.0/6", "node_pod_prefix": 16},
     None, "kubeflat_pod_cidr", "168.0.0.0/6", "overlaps 169.254.0.0/16"),
    ("pod CIDR in IETF protocol assignments", {"pod_cidr": "192.0.0.0/24",
                                               "node_pod_prefix": 26}, None,
     "kubeflat_pod_cidr", "192.0.0.0/24", "IETF protocol"),
    ("service CIDR in loopback", {"service_cidr": "127.96.0.0/12"}, None,
     "kubeflat_service_cidr", "127.96.0.0/12", "loopback"),
    ("service CIDR in multicast", {"service_cidr": "224.0.0.0/16"}, None,
     "kubeflat_service_cidr", "224.0.0.0/16", "multicast"),
    ("host network in link-local", {"host_networks": ["10.77.0.0/24", "169.254.1.0/24"]},
     None, "kubeflat_host_networks[1]", "169.254.1.0/24", "link-local"),
    ("host network in loopback", {"host_networks": ["127.0.0.0/24"]}, None,
     "kubeflat_host_networks[0]", "127.0.0.0/24", "loopback"),
    ("node pod CIDR in loopback", {}, _host(1, pod_cidr="127.0.1.0/24"),
     "kubeflat_node_pod_cidr of w1", "127.0.1.0/24", "loopback"),
    ("node pod CIDR in multicast", {}, _host(1, pod_cidr="224.0.1.0/24"),
     "kubeflat_node_pod_cidr of w1", "224.0.1.0/24", "multicast"),
    ("node address loopback", {}, _host(1, address="127.0.0.1"),
     "ansible_host of w1", "127.0.0.1", "loopback"),
    ("node address link-local", {}, _host(1, address="169.254.10.1"),
     "ansible_host of w1", "169.254.10.1", "link-local"),
    ("node address limited broadcast", {}, _host(1, address="255.255.255.255"),
     "ansible_host of w1", "255.255.255.255", "limited broadcast"),
    ("node address unspecified", {}, _host(1, address="0.0.0.0"),
     "ansible_host of w1", "0.0.0.0", "this network"),
    ("node address multicast", {}, _host(0, address="224.0.0.251"),
     "ansible_host of cp1", "224.0.0.251", "multicast"),
    ("outside host address loopback", {}, _host(2, address="127.0.0.2"),
     "ansible_host of db1", "127.0.0.2", "loopback"),
    # --- DNS names ---------------------------------------------------------------------
    ("cluster domain with a trailing dot", {"cluster_domain": "cluster.local."}, None,
     "kubeflat_cluster_domain", "cluster.local.", "end with a dot"),
    ("cluster domain with an underscore", {"cluster_domain": "my_cluster.local"}, None,
     "kubeflat_cluster_domain", "my_cluster.local", "label 'my_cluster'"),
    ("cluster domain upper case", {"cluster_domain": "Cluster.Local"}, None,
     "kubeflat_cluster_domain", "Cluster.Local", "lower case"),
    ("cluster domain label over 63", {"cluster_domain": "a" * 64 + ".local"}, None,
     "kubeflat_cluster_domain", "a" * 64, "longer than 63"),
    ("cluster domain over 253", {"cluster_domain": ".".join(["a" * 60] * 5)}, None,
     "kubeflat_cluster_domain", "a" * 60, "longer than 253"),
    ("cluster domain with an empty label", {"cluster_domain": "cluster..local"}, None,
     "kubeflat_cluster_domain", "cluster..local", "empty label"),
    ("cluster domain label ending in a dash", {"cluster_domain": "cluster-.local"}, None,
     "kubeflat_cluster_domain", "cluster-.local", "label 'cluster-'"),
    ("cluster name over 63", {"cluster_name": "c" * 64}, None,
     "kubeflat_cluster_name", "c" * 64, "longer than 63"),
    ("cluster name with a dot", {"cluster_name": "prod.eu"}, None,
     "kubeflat_cluster_name", "prod.eu", "DNS label"),
    ("node name upper case", {}, _host(1, name="Worker1"),
     "inventory_hostname", "Worker1", "Node name"),
    ("node name with an underscore", {}, _host(1, name="worker_1"),
     "inventory_hostname", "worker_1", "Node name"),
    ("node name label over 63", {}, _host(1, name="w" * 64),
     "inventory_hostname", "w" * 64, "longer than 63"),
    ("endpoint host not a DNS name", {"control_plane_endpoint": "api_lb.example:6443"}, None,
     "kubeflat_control_plane_endpoint", "api_lb.example:6443", "neither an IPv4"),
]


@pytest.mark.parametrize("label,overrides,transform,var,value,words", CASES,
                         ids=[c[0] for c in CASES])
def test_model_refuses_the_class_naming_variable_and_value(label, overrides, transform, var,
                                                           value, words):
    cfg = dict(SETTINGS, **overrides)
    hosts = copy.deepcopy(HOSTS)
    if transform:
        hosts = transform(hosts)
    with pytest.raises(ModelError) as exc:
        build_model(cfg, hosts)
    message = str(exc.value)
    assert exc.value.var == var, message
    assert var in message and value in message and words in message, message


@pytest.mark.parametrize("overrides", [
    {"pod_cidr": "100.64.0.0/16"},                      # CGNAT shared address space
    {"pod_cidr": "198.18.0.0/16"},                      # benchmarking
    {"pod_cidr": "172.16.0.0/16", "service_cidr": "192.168.128.0/20"},
    {"service_cidr": "198.51.100.0/24"},                # documentation (TEST-NET-2), labs
    {"host_networks": ["203.0.113.0/24"]},              # documentation (TEST-NET-3), labs
    {"cluster_domain": "k8s.example.com"},
    {"cluster_domain": "local"},
    {"control_plane_endpoint": "api.k8s.example.com:6443"},
    {"control_plane_endpoint": "https://10.77.0.5:6443"},
], ids=lambda o: ",".join("%s=%s" % kv for kv in o.items()))
def test_legitimate_on_prem_choices_are_accepted(overrides):
    hosts = copy.deepcopy(HOSTS)
    if "host_networks" in overrides:
        for i, h in enumerate(hosts):
            h["address"] = "203.0.113.%d" % (10 + i)
    build_model(dict(SETTINGS, **overrides), hosts)


def test_node_names_that_are_addresses_or_fqdns_are_accepted():
    hosts = copy.deepcopy(HOSTS)
    hosts[0]["name"] = "cp1.dc1.example.com"
    hosts[1]["name"] = "10.77.0.21"
    model = build_model(dict(SETTINGS), hosts)
    assert model["node_names"] == ["10.77.0.21", "cp1.dc1.example.com"]


def test_outside_host_names_are_not_node_names():
    hosts = copy.deepcopy(HOSTS)
    hosts[2]["name"] = "DB_1"  # never a Kubernetes object: only a route target
    assert build_model(dict(SETTINGS), hosts)["outside_hosts"][0]["name"] == "DB_1"


FACTS = {"127.0.0.0/8": "is_loopback", "169.254.0.0/16": "is_link_local",
         "224.0.0.0/4": "is_multicast", "240.0.0.0/4": "is_reserved",
         "255.255.255.255/32": "is_reserved"}


def test_table_agrees_with_python_ipaddress_facts():
    for text, fact in FACTS.items():
        net = ipaddress.ip_network(text)
        assert getattr(net, fact), text
        below = net.network_address - 1
        top = net.broadcast_address == ipaddress.ip_address("255.255.255.255")
        above = None if top else net.broadcast_address + 1
        for outside in (below, above):
            if outside is not None and not any(outside in ipaddress.ip_network(t)
                                               for t, _ in UNUSABLE_NETWORKS):
                assert not getattr(outside, fact), (text, outside)
                assert special_purpose(outside) is None, outside
    assert {t for t, _ in UNUSABLE_NETWORKS} >= set(FACTS)
    # "this network" has no ipaddress fact of its own; 0.0.0.0 is its unspecified address.
    assert ipaddress.ip_address("0.0.0.0").is_unspecified
    assert special_purpose(ipaddress.ip_address("0.0.0.0"))[0] == ipaddress.ip_network("0.0.0.0/8")


@pytest.mark.parametrize("name,problem", [
    ("a" * 63, None), ("a" * 64, "longer than 63"), ("-a", "DNS label"), ("a-", "DNS label"),
    ("Ab", "lower case"), ("", "non-empty"), (None, "non-empty"), ("1a", None)])
def test_label_problem(name, problem):
    reason = label_problem(name)
    assert (reason is None) if problem is None else (problem in reason), reason


@pytest.mark.parametrize("name,wildcard,problem", [
    ("a.b", False, None), ("*.a.b", True, None), ("*.a.b", False, "label '*'"),
    ("a.", False, "end with a dot"), (".a", False, "empty label"),
    ("A.b", False, "lower case"), ("a" * 64 + ".b", False, "longer than 63"),
    (".".join(["a" * 63] * 4), False, "longer than 253")])
def test_name_problem(name, wildcard, problem):
    reason = name_problem(name, wildcard=wildcard)
    assert (reason is None) if problem is None else (problem in reason), reason


def test_ingress_host_with_a_label_over_63_is_refused():
    host = "x" * 64 + ".example.com"
    apps = [{"name": "api", "image": "r/api:1", "ports": [{"name": "http", "port": 8080}],
             "ingress": [{"host": host}]}]
    with pytest.raises(SpecError) as exc:
        validate_catalog(apps, spec_settings({}), {"cluster_domain": "cluster.local"})
    assert "app_specs_apps[api].ingress[0].host" in str(exc.value)
    assert host in str(exc.value)
