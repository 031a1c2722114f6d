"""Unit tests for plugins/module_utils/kubeflat_discovery.py (node pod CIDRs from a cluster).

No API server can run on this machine (kube-apiserver cannot be installed here), so these tests
use recorded API objects (tests/unit/fixtures/discovery, see its README): the pure functions
get them directly, and `fetch_api_objects` — the code path that talks to a real cluster, with
the kubernetes Python client and a kubeconfig — reads them from a loopback HTTP server that
replays those objects at the real API paths. That server is a recording, not a cluster: it
proves the client/kubeconfig/JSON path, not any API server behaviour.
"""
import copy
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_discovery import (
    DiscoveryError, cilium_node_entries, fetch_api_objects, node_entries, routes_from_api)

FIXTURES = Path(__file__).parent / "fixtures" / "discovery"


def load(name):
    return json.loads((FIXTURES / name).read_text())


NODES = load("nodes-flannel.json")
NODES_NO_CIDR = load("nodes-cilium-cluster-pool.json")
CILIUM = load("ciliumnodes-cluster-pool.json")


def test_fixture_nodes_are_valid_kubernetes_objects(tmp_path):
    out = tmp_path / "nodes.yaml"
    out.write_text(yaml.safe_dump_all(NODES["items"] + NODES_NO_CIDR["items"]))
    exe = Path(sys.executable).parent / "kubernetes-validate"
    proc = subprocess.run([str(exe), "-k", "1.37.0", "--strict", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_routes_from_node_pod_cidrs_ipv4_only():
    assert routes_from_api(NODES, resource="node") == [
        {"dest": "10.244.0.0/24", "via": "10.77.0.11", "node": "cp1",
         "source": "Node spec.podCIDRs"},
        {"dest": "10.244.1.0/24", "via": "10.77.0.21", "node": "w1",
         "source": "Node spec.podCIDRs"},
        {"dest": "10.244.2.0/24", "via": "10.77.0.22", "node": "w2",
         "source": "Node spec.podCIDRs"},
    ]


def test_routes_from_cilium_nodes_use_internal_ip_not_cilium_internal_ip():
    routes = routes_from_api(None, CILIUM, resource="ciliumnode")
    assert [(r["dest"], r["via"], r["node"]) for r in routes] == [
        ("10.0.0.0/24", "10.77.0.11", "cp1"), ("10.0.1.0/24", "10.77.0.21", "w1"),
        ("10.0.2.0/24", "10.77.0.22", "w2")]
    assert {r["source"] for r in routes} == {"CiliumNode spec.ipam.podCIDRs"}


def test_auto_prefers_node_and_falls_back_to_cilium_node():
    assert routes_from_api(NODES, CILIUM, "auto") == routes_from_api(NODES, resource="node")
    assert [r["dest"] for r in routes_from_api(NODES_NO_CIDR, CILIUM, "auto")] == [
        "10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
    mixed = copy.deepcopy(NODES_NO_CIDR)
    mixed["items"][0]["spec"] = {"podCIDR": "10.244.0.0/24"}   # only the legacy field
    routes = routes_from_api(mixed, CILIUM, "auto")
    assert routes[-1]["dest"] == "10.244.0.0/24" and routes[-1]["source"] == "Node spec.podCIDRs"


def test_entries_keep_every_node():
    assert sorted(node_entries(NODES)) == ["cp1", "w1", "w2"]
    assert cilium_node_entries(CILIUM)["w1"]["address"] == "10.77.0.21"
    assert node_entries({"items": []}) == {} and node_entries(None) == {}


def test_refuses_node_without_pod_cidr():
    with pytest.raises(DiscoveryError, match="node cp1: no IPv4 pod CIDR"):
        routes_from_api(NODES_NO_CIDR, None, "node")
    with pytest.raises(DiscoveryError, match="and CiliumNode spec.ipam.podCIDRs"):
        routes_from_api(NODES_NO_CIDR, {"items": []}, "auto")


def test_refuses_node_without_internal_ip():
    bad = copy.deepcopy(NODES)
    bad["items"][1]["status"]["addresses"] = [{"type": "Hostname", "address": "w1"}]
    with pytest.raises(DiscoveryError, match="node w1: no IPv4 InternalIP"):
        routes_from_api(bad, resource="node")


def test_refuses_overlapping_and_malformed_pod_cidrs():
    bad = copy.deepcopy(NODES)
    bad["items"][2]["spec"]["podCIDRs"] = ["10.244.1.0/24"]
    with pytest.raises(DiscoveryError, match="w1 pod CIDR 10.244.1.0/24 overlaps node w2"):
        routes_from_api(bad, resource="node")
    bad["items"][2]["spec"]["podCIDRs"] = ["10.244.2.1/24"]
    with pytest.raises(DiscoveryError, match="Node w2 spec.podCIDRs.*host bits"):
        routes_from_api(bad, resource="node")


def test_refuses_empty_cluster_and_unknown_resource():
    with pytest.raises(DiscoveryError, match="no Node objects"):
        routes_from_api({"items": []}, resource="node")
    with pytest.raises(DiscoveryError, match="no CiliumNode objects"):
        routes_from_api(None, {"items": []}, resource="ciliumnode")
    with pytest.raises(DiscoveryError, match="resource='pods'"):
        routes_from_api(NODES, resource="pods")


# --- the client path, against a loopback replay of the recorded objects ---------------------
class _Replay(BaseHTTPRequestHandler):
    routes = {}
    seen = []

    def do_GET(self):  # noqa: N802 (http.server API)
        path = self.path.split("?")[0]
        self.seen.append(path)
        body = self.routes.get(path)
        status = 200 if body is not None else 404
        if body is None:
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404,
                    "message": "the server could not find the requested resource"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def replay(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "replay",
        "clusters": [{"name": "replay",
                      "cluster": {"server": "http://127.0.0.1:%d" % server.server_port}}],
        "users": [{"name": "u", "user": {"token": "recorded"}}],
        "contexts": [{"name": "replay", "context": {"cluster": "replay", "user": "u"}}],
    }))
    _Replay.seen = []
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_reads_nodes_and_cilium_nodes_through_the_kubernetes_client(replay):
    _Replay.routes = {"/api/v1/nodes": NODES_NO_CIDR,
                      "/apis/cilium.io/v2/ciliumnodes": CILIUM}
    nodes, cilium = fetch_api_objects(str(replay), None, "auto")
    assert nodes == NODES_NO_CIDR and cilium == CILIUM
    assert _Replay.seen == ["/api/v1/nodes", "/apis/cilium.io/v2/ciliumnodes"]
    assert [r["node"] for r in routes_from_api(nodes, cilium, "auto")] == ["cp1", "w1", "w2"]


def test_fetch_without_cilium_crd_is_not_an_error_in_auto_mode(replay):
    _Replay.routes = {"/api/v1/nodes": NODES}
    nodes, cilium = fetch_api_objects(str(replay), "replay", "auto")
    assert cilium is None and routes_from_api(nodes, cilium, "auto")[0]["via"] == "10.77.0.11"
    with pytest.raises(Exception) as err:
        fetch_api_objects(str(replay), None, "ciliumnode")
    assert getattr(err.value, "status", None) == 404
