"""BGP racks: the model's refusals (each names the variable), the BIRD config, the per-host
route set across racks, the Cilium BGP objects against the v1.19.2 CRD schemas and the chart
values against the chart schema, flannel refused naming the modes that can."""
import copy
import json
import os

import jsonschema
import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_bgp import (
    bird_config, cilium_bgp_objects, routed_outside_hosts)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_flannel import FlannelError, build_manifest
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import ModelError, build_model
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import host_route_set, managed_host
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_cilium

REFERENCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                                         "reference", "cilium"))

NETS = ["10.83.0.0/24", "10.83.1.0/24", "10.83.2.0/24", "10.83.3.0/24"]
RACKS = [{"name": "rack1", "network": "10.83.1.0/24", "asn": 65011,
          "peers": [{"address": "10.83.1.2", "asn": 65101}]},
         {"name": "rack2", "network": "10.83.2.0/24", "asn": 65012,
          "peers": [{"address": "10.83.2.2", "asn": 65102}]}]
HOSTS = [
    {"name": "cp1", "groups": ["kube_control_plane", "k8s_cluster"], "address": "10.83.1.11"},
    {"name": "w1", "groups": ["kube_node", "k8s_cluster"], "address": "10.83.1.12"},
    {"name": "w2", "groups": ["kube_node", "k8s_cluster"], "address": "10.83.2.11"},
    {"name": "w3", "groups": ["kube_node", "k8s_cluster"], "address": "10.83.2.12"},
    {"name": "db1", "groups": ["k8s_outside"], "address": "10.83.3.11"},
    {"name": "lb1", "groups": ["k8s_outside"], "address": "10.83.1.31"},
]


def settings(**kw):
    base = {"cluster_name": "bgp", "distribution": "none", "cni": "static",
            "host_networks": NETS, "bgp": True, "bgp_racks": copy.deepcopy(RACKS)}
    base.update(kw)
    return base


def model(hosts=None, **kw):
    return build_model(settings(**kw), copy.deepcopy(hosts or HOSTS))


def refused(var_part, hosts=None, **kw):
    with pytest.raises(ModelError) as err:
        model(hosts, **kw)
    assert var_part in err.value.var, (err.value.var, str(err.value))
    return str(err.value)


def with_host(name, **extra):
    hosts = copy.deepcopy(HOSTS)
    for h in hosts:
        if h["name"] == name:
            h.update(extra)
    return hosts


# --------------------------------------------------------------------------- model
def test_default_stays_single_segment_without_bgp():
    m = build_model({"host_networks": ["10.77.0.0/24"]},
                    [{"name": "cp1", "groups": ["kube_control_plane"], "address": "10.77.0.11"}])
    assert m["bgp"] == {"enabled": False}


def test_racks_without_bgp_are_still_refused_naming_bgp():
    msg = refused("kubeflat_cni", bgp=False, bgp_racks=[])
    assert "kubeflat_bgp: true" in msg and "static or cilium" in msg


def test_bgp_model_per_node():
    m = model()
    bgp = m["bgp"]
    assert bgp["enabled"] and bgp["hold_time"] == 9 and bgp["keepalive_time"] == 3
    assert bgp["nodes"]["w2"] == {"asn": 65012, "router_id": "10.83.2.11",
                                  "address": "10.83.2.11", "rack": "rack2",
                                  "network": "10.83.2.0/24", "pod_cidr": m["nodes"][2]["pod_cidr"],
                                  "peers": [{"address": "10.83.2.2", "asn": 65102}]}
    assert [r["nodes"] for r in bgp["racks"]] == [["cp1", "w1"], ["w2", "w3"]]


@pytest.mark.parametrize("kw,var", [
    ({"bgp_racks": [dict(RACKS[0], asn=0), RACKS[1]]}, "kubeflat_bgp_racks[0].asn"),
    ({"bgp_racks": [dict(RACKS[0], asn=23456), RACKS[1]]}, "kubeflat_bgp_racks[0].asn"),
    ({"bgp_racks": [dict(RACKS[0], asn=4294967296), RACKS[1]]}, "kubeflat_bgp_racks[0].asn"),
    ({"bgp_racks": [dict(RACKS[0], asn="x"), RACKS[1]]}, "kubeflat_bgp_racks[0].asn"),
    ({"bgp_racks": [RACKS[0], dict(RACKS[1], peers=[{"address": "10.83.2.2", "asn": 0}])]},
     "kubeflat_bgp_racks[1].peers[0].asn"),
    ({"bgp_racks": [RACKS[0], dict(RACKS[1], peers=[{"address": "10.83.1.2", "asn": 65102}])]},
     "kubeflat_bgp_racks[1].peers[0].address"),        # peer not on the rack's segment
    ({"bgp_racks": [RACKS[0], dict(RACKS[1], peers=[{"address": "10.83.2.11", "asn": 65102}])]},
     "kubeflat_bgp_racks[1].peers[0].address"),        # the peer is a node
    ({"bgp_racks": [RACKS[0], dict(RACKS[1], peers=[])]}, "kubeflat_bgp_racks[1].peers"),
    ({"bgp_racks": [RACKS[0], dict(RACKS[1], network="10.99.0.0/24")]},
     "kubeflat_bgp_racks[1].network"),
    ({"bgp_racks": [RACKS[0], dict(RACKS[1], network=RACKS[0]["network"])]},
     "kubeflat_bgp_racks[1].network"),
    ({"bgp_racks": [RACKS[0]]}, "kubeflat_bgp_racks"),                   # w2 has no rack
    ({"bgp_racks": RACKS + [{"network": "10.83.0.0/24", "asn": 65010,
                              "peers": [{"address": "10.83.0.2", "asn": 65100}]}]},
     "kubeflat_bgp_racks"),                                               # rack without nodes
    ({"bgp_racks": [RACKS[0], dict(RACKS[1], asn=65102)]}, "kubeflat_bgp_asn of w2"),  # iBGP
    ({"bgp_asn_mode": "node"}, "kubeflat_bgp_asn of cp1"),
    ({"bgp_asn_mode": "pod"}, "kubeflat_bgp_asn_mode"),
    ({"bgp_hold_time": 2}, "kubeflat_bgp_hold_time"),
    ({"bgp_keepalive_time": 4}, "kubeflat_bgp_keepalive_time"),
    ({"bgp_bfd": True, "cni": "cilium"}, "kubeflat_bgp_bfd"),
    ({"cni": "flannel"}, "kubeflat_cni"),
    ({"bgp": "yes"}, "kubeflat_bgp"),
    ({"bgp": False}, "kubeflat_bgp_racks"),        # racks given but BGP off
])
def test_bgp_refusals_name_the_variable(kw, var):
    msg = refused(var, **kw)
    assert var in msg


def test_flannel_refusal_names_the_modes_that_can():
    msg = refused("kubeflat_cni", cni="flannel")
    assert "static" in msg and "cilium" in msg


@pytest.mark.parametrize("host,extra,var", [
    ("w1", {"bgp_router_id": "10.83.1.11"}, "kubeflat_bgp_router_id of w1"),   # = cp1's id
    ("w1", {"bgp_router_id": "0.0.0.0"}, "kubeflat_bgp_router_id of w1"),
    ("w1", {"bgp_asn": 65535}, "kubeflat_bgp_asn of w1"),
    ("w1", {"bgp_peers": [{"address": "10.83.2.2", "asn": 65102}]}, "kubeflat_bgp_peers of w1"),
    ("db1", {"bgp_asn": 65001}, "kubeflat_bgp_asn of db1"),                     # not a node
])
def test_per_host_refusals_name_the_variable_and_host(host, extra, var):
    refused(var, hosts=with_host(host, **extra))


def test_node_asn_mode_needs_unique_asns():
    hosts = copy.deepcopy(HOSTS)
    for i, h in enumerate(hosts[:4]):
        h["bgp_asn"] = 65200 + i
    m = model(hosts, bgp_asn_mode="node")
    assert [m["bgp"]["nodes"][n]["asn"] for n in ("cp1", "w1", "w2", "w3")] == [
        65200, 65201, 65202, 65203]
    hosts[1]["bgp_asn"] = 65200
    refused("kubeflat_bgp_asn of w1", hosts=hosts, bgp_asn_mode="node")


def test_password_rules():
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_bgp import BgpError, check_password
    assert check_password("s3cr3t!") == "s3cr3t!"
    for bad in ('a"b', "a b", "a\\b", "x" * 81):
        with pytest.raises(BgpError) as err:
            check_password(bad)
        assert err.value.var == "kubeflat_bgp_password" and bad not in str(err.value)


# --------------------------------------------------------------------------- routes
def test_route_sets_within_the_rack_only():
    m = model()
    pods = {n["name"]: n["pod_cidr"] for n in m["nodes"]}
    assert host_route_set(m, "cp1") == [{"dest": pods["w1"], "via": "10.83.1.12", "node": "w1"}]
    assert host_route_set(m, "w3") == [{"dest": pods["w2"], "via": "10.83.2.11", "node": "w2"}]
    # an outside host on a rack segment routes directly to that rack's nodes only
    assert [r["node"] for r in host_route_set(m, "lb1")] == ["cp1", "w1"]
    # an outside host on a segment without nodes needs none (its gateway learned them)
    assert managed_host(m, "db1") and host_route_set(m, "db1") == []
    assert routed_outside_hosts(m) == ["db1"]


def test_route_sets_unchanged_without_bgp():
    hosts = [{"name": "cp1", "groups": ["kube_control_plane"], "address": "10.77.0.11"},
             {"name": "w1", "groups": ["kube_node"], "address": "10.77.0.21"},
             {"name": "db1", "groups": ["k8s_outside"], "address": "10.77.1.31"}]
    m = build_model({"host_networks": ["10.77.0.0/24", "10.77.1.0/24"]}, hosts)
    assert len(host_route_set(m, "db1")) == 2 and routed_outside_hosts(m) == []


# --------------------------------------------------------------------------- BIRD
def test_bird_config_announces_only_its_own_pod_cidr_and_imports_nothing():
    m = model()
    conf = bird_config(m, "w2")
    pod = m["bgp"]["nodes"]["w2"]["pod_cidr"]
    assert "router id 10.83.2.11;" in conf
    assert "route %s blackhole;" % pod in conf
    assert 'if proto = "kubeflat_pod_cidr" && net = %s then accept;' % pod in conf
    assert "local 10.83.2.11 as 65012;" in conf and "neighbor 10.83.2.2 as 65102;" in conf
    assert "import none;" in conf and "export filter kubeflat_export;" in conf
    assert "hold time 9;" in conf and "keepalive time 3;" in conf
    assert "graceful restart off;" in conf
    body = "\n".join(l for l in conf.splitlines() if not l.lstrip().startswith("#"))
    assert "protocol kernel" not in body and "password" not in body and "bfd" not in body
    assert conf.count("protocol bgp ") == 1


def test_bird_config_options():
    m = model(bgp_bfd=True)
    conf = bird_config(m, "cp1", password="s3cr3t")
    assert "protocol bfd kubeflat_bfd {" in conf and "  bfd on;" in conf
    assert '  password "s3cr3t";' in conf
    assert bird_config(m, "db1") is None
    assert bird_config(build_model({"host_networks": ["10.77.0.0/24"]}, [
        {"name": "cp1", "groups": ["kube_control_plane"], "address": "10.77.0.11"}]), "cp1") is None


def test_bird_config_per_node_peers():
    hosts = with_host("w1", bgp_peers=[{"address": "10.83.1.2", "asn": 65101},
                                       {"address": "10.83.1.3", "asn": 65101}])
    conf = bird_config(model(hosts), "w1")
    assert conf.count("protocol bgp ") == 2 and "neighbor 10.83.1.3 as 65101;" in conf


# --------------------------------------------------------------------------- Cilium
def _crd_schemas():
    out = {}
    for name in os.listdir(os.path.join(REFERENCE, "crds")):
        with open(os.path.join(REFERENCE, "crds", name)) as handle:
            crd = yaml.safe_load(handle)
        for version in crd["spec"]["versions"]:
            if version["name"] == "v2":
                out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def test_cilium_objects_validate_against_the_v2_crd_schemas():
    schemas = _crd_schemas()
    hosts = copy.deepcopy(HOSTS)
    hosts[0]["bgp_asn"] = 65111
    objects = cilium_bgp_objects(model(hosts, cni="cilium"), auth_secret="kubeflat-bgp-auth")
    kinds = [o["kind"] for o in objects]
    assert kinds == ["CiliumBGPAdvertisement", "CiliumBGPPeerConfig", "CiliumBGPClusterConfig",
                     "CiliumBGPClusterConfig"] + ["CiliumBGPNodeConfigOverride"] * 4
    for obj in objects:
        assert obj["apiVersion"] == "cilium.io/v2"
        jsonschema.validate(obj, schemas[obj["kind"]])
    adv = objects[0]
    assert adv["spec"]["advertisements"] == [{"advertisementType": "PodCIDR"}]
    assert objects[1]["spec"]["families"][0]["advertisements"]["matchLabels"] == \
        adv["metadata"]["labels"]
    assert objects[1]["spec"]["authSecretRef"] == "kubeflat-bgp-auth"
    rack2 = objects[3]["spec"]
    assert rack2["nodeSelector"]["matchExpressions"][0]["values"] == ["w2", "w3"]
    assert rack2["bgpInstances"][0]["localASN"] == 65012
    assert rack2["bgpInstances"][0]["peers"][0]["peerAddress"] == "10.83.2.2"
    cp1 = objects[4]
    assert cp1["metadata"]["name"] == "cp1"
    assert cp1["spec"]["bgpInstances"][0]["localASN"] == 65111
    assert cp1["spec"]["bgpInstances"][0]["peers"][0]["localAddress"] == "10.83.1.11"
    assert "localASN" not in objects[5]["spec"]["bgpInstances"][0]


def test_cilium_objects_detect_a_bad_field():
    schemas = _crd_schemas()
    obj = cilium_bgp_objects(model(cni="cilium"))[1]
    obj["spec"]["timers"]["holdTimeSeconds"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, schemas["CiliumBGPPeerConfig"])


def test_cilium_values_turn_bgp_on_and_validate_against_the_chart_schema():
    with open(os.path.join(REFERENCE, "v1.19.2", "values.schema.json")) as handle:
        schema = json.load(handle)
    values = kubeflat_cilium.build_values(model(cni="cilium"))
    jsonschema.validate(values, schema)
    assert values["bgpControlPlane"] == {"enabled": True}
    assert values["autoDirectNodeRoutes"] is True
    assert values["directRoutingSkipUnreachable"] is True
    plain = kubeflat_cilium.build_values(build_model(
        {"host_networks": ["10.77.0.0/24"], "cni": "cilium"},
        [{"name": "cp1", "groups": ["kube_control_plane"], "address": "10.77.0.11"}]))
    assert "bgpControlPlane" not in plain and "directRoutingSkipUnreachable" not in plain
    assert cilium_bgp_objects(build_model({"host_networks": ["10.77.0.0/24"]}, [
        {"name": "cp1", "groups": ["kube_control_plane"], "address": "10.77.0.11"}])) == []


def test_cilium_refuses_per_node_peers():
    hosts = with_host("w1", bgp_peers=[{"address": "10.83.1.3", "asn": 65101}])
    refused("kubeflat_bgp_peers of w1", hosts=hosts, cni="cilium")


def test_flannel_builder_refuses_racks_naming_the_modes_that_can():
    m = model()
    m["cni"] = "flannel"
    with pytest.raises(FlannelError) as err:
        build_manifest(m, {})
    assert err.value.var == "kubeflat_cni" and "static or cilium" in str(err.value)
