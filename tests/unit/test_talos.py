"""Unit tests for plugins/module_utils/kubeflat_talos.py: every generated Talos document is
validated against the real Talos JSON schemas (../shared/reference), the talosctl plan is
checked line by line, and bad input is refused."""
import copy
import json
import os

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_talos as kt
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REFERENCE = os.path.join(ROOT, "..", "shared", "reference", "talos")
VERSIONS = ["v1.11", "v1.12"]


def schema(version):
    path = os.path.join(REFERENCE, version, "config.schema.json")
    assert os.path.exists(path), "Talos schema missing: %s (shared/ beside the repo)" % path
    with open(path) as handle:
        return json.load(handle)


def host(name, address, *groups):
    return {"name": name, "address": address, "groups": list(groups), "pod_cidr": None}


HOSTS = [host("cp%d" % i, "192.168.20.1%d" % i, "kube_control_plane") for i in (1, 2, 3)] + \
    [host("w%d" % i, "192.168.20.2%d" % i, "kube_node") for i in (1, 2)]


def model(cni="static", **extra):
    settings = {"cluster_name": "prod-talos", "distribution": "talos", "cni": cni,
                "host_networks": ["192.168.20.0/24"], "control_plane_ha": True}
    settings.update(extra)
    return build_model(settings, copy.deepcopy(HOSTS))


SETTINGS = {"gateway": "192.168.20.1", "nameservers": ["192.168.20.1"], "install_disk": "/dev/nvme0n1"}
RESERVED = {"systemReserved": {"cpu": "2", "memory": "6Gi"}, "evictionHard": {"memory.available": "500Mi"}}


def all_documents(m, version):
    settings = dict(SETTINGS, talos_version=version)
    docs = [kt.common_patch(m), kt.controlplane_patch(m, settings)]
    for name in m["node_names"]:
        docs += kt.node_patch(m, name, settings, RESERVED)
    return docs


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cni", ["static", "flannel", "cilium"])
def test_every_generated_document_is_valid_against_the_talos_schema(version, cni):
    docs = all_documents(model(cni), version)
    assert len(docs) >= 2 + 5
    assert kt.validate_documents(docs, schema(version)) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_the_schema_check_can_fail(version):
    s = schema(version)
    bad_field = {"cluster": {"network": {"cni": {"name": "none"}, "podSubnet": "10.0.0.0/8"}}}
    bad_enum = {"cluster": {"network": {"cni": {"name": "calico"}}}}
    bad_type = {"cluster": {"proxy": {"disabled": "yes"}}}
    unknown_kind = {"apiVersion": "v1alpha1", "kind": "NoSuchConfig"}
    for doc in (bad_field, bad_enum, bad_type, unknown_kind):
        assert kt.validate_documents([doc], s), doc


def test_v111_interfaces_are_not_valid_in_v112():
    # Talos v1.12 removed machine.network.interfaces: the builder must switch shapes.
    v111 = kt.node_patch(model(), "w1", dict(SETTINGS, talos_version="v1.11"))
    assert kt.validate_documents(v111, schema("v1.11")) == []
    assert kt.validate_documents(v111, schema("v1.12")) != []


def test_common_patch_from_the_model():
    m = model("cilium")
    patch = kt.common_patch(m)
    net = patch["cluster"]["network"]
    assert net["podSubnets"] == [m["pod_cidr"]] and net["serviceSubnets"] == [m["service_cidr"]]
    assert net["dnsDomain"] == m["cluster_domain"]
    # kubeflat deploys the CNI itself; Talos' built-in flannel would be a VXLAN overlay.
    assert net["cni"] == {"name": "none"}
    assert patch["cluster"]["proxy"] == {"disabled": True}
    assert "proxy" not in kt.common_patch(model("static"))["cluster"]
    assert "proxy" not in kt.common_patch(model("cilium", kube_proxy_replacement=False))["cluster"]


@pytest.mark.parametrize("version", VERSIONS)
def test_pods_resolve_through_the_control_plane_addresses_by_default(version):
    m = model()
    patch = kt.common_patch(m)
    assert patch["machine"]["kubelet"]["clusterDNS"] == ["192.168.20.11", "192.168.20.12",
                                                         "192.168.20.13"]
    # Talos' CoreDNS Deployment behind the VIP is replaced by kubeflat's DaemonSet.
    assert patch["cluster"]["coreDNS"] == {"disabled": True}
    assert kt.validate_documents([patch], schema(version)) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_service_dns_mode_leaves_talos_dns_defaults(version):
    patch = kt.common_patch(model(dns_mode="service"))
    assert "clusterDNS" not in patch["machine"]["kubelet"]
    assert "coreDNS" not in patch["cluster"]
    assert kt.validate_documents([patch], schema(version)) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_static_mode_pod_routes_go_to_every_other_node(version):
    m = model("static")
    docs = kt.node_patch(m, "w1", dict(SETTINGS, talos_version=version), RESERVED)
    if version == "v1.11":
        iface = docs[0]["machine"]["network"]["interfaces"][0]
        routes = [(r["network"], r["gateway"]) for r in iface["routes"]]
        assert iface["addresses"] == ["192.168.20.21/24"]
        assert docs[0]["machine"]["network"]["hostname"] == "w1"
    else:
        link = [d for d in docs if d.get("kind") == "LinkConfig"][0]
        routes = [(r["destination"], r["gateway"]) for r in link["routes"]]
        assert link["addresses"] == [{"address": "192.168.20.21/24"}]
        assert [d for d in docs if d.get("kind") == "HostnameConfig"][0]["hostname"] == "w1"
    expected = [("0.0.0.0/0", "192.168.20.1")] + [
        (r["dest"], r["via"]) for r in m["pod_routes"] if r["node"] != "w1"]
    assert routes == expected
    own = [n for n in m["nodes"] if n["name"] == "w1"][0]["pod_cidr"]
    assert own not in [dest for dest, _ in routes]
    assert docs[0]["machine"]["install"]["disk"] == "/dev/nvme0n1"
    assert docs[0]["machine"]["kubelet"]["extraConfig"] == RESERVED


@pytest.mark.parametrize("cni", ["flannel", "cilium"])
def test_no_pod_routes_when_the_cni_routes(cni):
    docs = kt.node_patch(model(cni), "w1", dict(SETTINGS, talos_version="v1.12"))
    link = [d for d in docs if d.get("kind") == "LinkConfig"][0]
    assert link["routes"] == [{"destination": "0.0.0.0/0", "gateway": "192.168.20.1"}]


@pytest.mark.parametrize("settings,var", [
    ({"talos_version": "v1.10"}, "talos_version"),
    ({"install_disk": "sda"}, "talos_install_disk"),
    ({"interface": "eth 0"}, "talos_interface"),
    ({"gateway": "router"}, "talos_gateway"),
    ({"nameservers": ["dns.local"]}, "talos_nameservers[0]"),
    ({"kubernetes_version": "latest"}, "talos_kubernetes_version"),
    ({"colour": "blue"}, "talos_colour"),
])
def test_bad_settings_are_refused(settings, var):
    with pytest.raises(kt.TalosError) as err:
        kt.node_patch(model(), "w1", settings)
    assert err.value.var == var


def test_bad_reservations_and_unknown_nodes_are_refused():
    with pytest.raises(kt.TalosError) as err:
        kt.node_reserved({"cpu": "lots"})
    assert err.value.var == "talos_kubelet_system_reserved.cpu"
    with pytest.raises(kt.TalosError) as err:
        kt.node_patch(model(), "db1")
    assert err.value.var == "inventory_hostname"


def test_talosctl_plan_exact_command_lines():
    m = model()
    base = "/r/talos"
    plan = kt.talosctl_plan(m, base, {"talos_version": "v1.12", "kubernetes_version": "1.37.0"})
    assert plan["gen_secrets"] == ["talosctl", "gen", "secrets", "--output-file", "/r/talos/secrets.yaml",
                                   "--talos-version", "v1.12"]
    assert plan["gen_config"] == [
        "talosctl", "gen", "config", "prod-talos", "https://192.168.20.11:6443",
        "--with-secrets", "/r/talos/secrets.yaml", "--talos-version", "v1.12",
        "--kubernetes-version", "1.37.0",
        "--config-patch", "@/r/talos/patches/common.yaml",
        "--config-patch-control-plane", "@/r/talos/patches/controlplane.yaml",
        "--output-types", "controlplane,worker", "--with-docs=false", "--with-examples=false",
        "--output", "/r/talos/generated", "--force"]
    assert plan["patch"]["cp2"] == ["talosctl", "machineconfig", "patch", "/r/talos/generated/controlplane.yaml",
                                    "--patch", "@/r/talos/patches/nodes/cp2.yaml",
                                    "--output", "/r/talos/nodes/cp2.yaml"]
    assert plan["patch"]["w1"][3] == "/r/talos/generated/worker.yaml"
    assert plan["apply_insecure"]["w2"] == ["talosctl", "apply-config", "--insecure", "--nodes",
                                            "192.168.20.22", "--file", "/r/talos/nodes/w2.yaml"]
    assert plan["apply"]["w2"] == ["talosctl", "--talosconfig", "/r/talos/talosconfig", "apply-config",
                                   "--nodes", "192.168.20.22", "--endpoints", "192.168.20.22",
                                   "--file", "/r/talos/nodes/w2.yaml"]
    assert plan["apply_dry_run"]["w2"] == plan["apply"]["w2"] + ["--dry-run"]
    assert plan["bootstrap"] == ["talosctl", "--talosconfig", "/r/talos/talosconfig", "bootstrap",
                                 "--nodes", "192.168.20.11", "--endpoints", "192.168.20.11"]
    assert plan["bootstrap_node"] == "cp1"
    assert plan["kubeconfig"][-1] == "--force"
    # Only cp1 is bootstrapped, every node gets exactly one config.
    assert sorted(plan["patch"]) == sorted(m["node_names"])


def test_plan_text_lists_every_command_in_order():
    m = model()
    plan = kt.talosctl_plan(m, "/r/talos", {}, talosctl="/opt/talosctl")
    text = kt.plan_text(m, plan)
    lines = [l for l in text.splitlines() if not l.startswith("#")]
    assert lines[0].startswith("/opt/talosctl gen secrets")
    assert lines[1].startswith("/opt/talosctl gen config prod-talos")
    assert lines[-2].startswith("/opt/talosctl --talosconfig /r/talos/talosconfig bootstrap")
    assert lines[-1].startswith("/opt/talosctl --talosconfig /r/talos/talosconfig kubeconfig")
    assert sum(1 for l in lines if "apply-config --insecure" in l) == len(m["nodes"])


def test_endpoint_follows_the_model():
    m = model(control_plane_endpoint="192.168.20.10:6443")
    assert kt.endpoint_url(m) == "https://192.168.20.10:6443"
    assert "192.168.20.10" in kt.controlplane_patch(m)["cluster"]["apiServer"]["certSANs"]
