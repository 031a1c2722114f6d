"""The request path of the design, for real, in the lab (lab "edge", inventories/edge):

    ext1 (client outside the cluster) -> lb1 (outside balancer, rendered config, real Envoy)
      -> the ingress on every node's host network (rendered DaemonSet config, real Envoy)
      -> a web pod (real CNI pod) -> its Envoy sidecar (rendered) -> a catalog pod,
    every name resolved by a DNS server on each control-plane address (cp1, cp2, cp3), where
    the rendered Envoy resolvers point (kubeflat_dns_mode: control_planes).

The lab is converged with site.yml (network, routes, specs) first. There is no kubelet, no
container runtime and no CoreDNS here: tests/integration/edgelab.py plays their part and only
theirs (CNI pods, starting the rendered containers, preStop hooks, DNS answers from the ready
pods), and says so. Assertions are on what each server saw and on a bounded request stream
from ext1 while the faults happen; everything is stopped and the lab torn down in the fixture.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from edgelab import EdgeLab, format_trace, index_logs, trace, wait_for
from lab import Lab
from labrunner import assert_run_ok, output, run_playbook

INVENTORY = Path(__file__).parent / "inventories" / "edge"
CONTROL_PLANES = {"cp1": "10.81.0.11", "cp2": "10.81.0.12", "cp3": "10.81.0.13"}
NODES = dict(CONTROL_PLANES, w1="10.81.0.21", w2="10.81.0.22")
BALANCER, CLIENT = "lb1", "ext1"
VHOST = "shop.edge.example"
# web on three nodes, catalog on three; catalog-cp3 is started only while cp1's DNS is down.
PLACEMENT = {"web": ["cp1", "w1", "w2"], "catalog": ["cp2", "w1", "w2", "cp3"]}
SPARE = "catalog-cp3"
RETRIES = "cluster.shop_catalog.upstream_rq_retry"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("dnsmasq") or not shutil.which("nsenter")
    or not os.access(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "envoy", os.X_OK),
    reason="needs root, dnsmasq, nsenter and the project's envoy (make setup)")


def start_all(edge):
    for address in edge.r.dns_servers:
        edge.start_dns(address)
    running = [p for p in edge.pods if p != SPARE]
    for pod in running:
        edge.start_pod(pod)
    wait_for(lambda: all(edge.pod_ready(p) for p in running), 60, "pods ready")
    edge.dns_add(running)
    for host in NODES:
        edge.start_ingress(host)
    edge.start_balancer(BALANCER)
    wait_for(lambda: all(edge.ingress_ready(h) for h in NODES), 60, "ingress ready everywhere")
    wait_for(lambda: len(edge.healthy_endpoints(edge.node_ns(BALANCER), "ingress_http").get(
        "ingress_http", [])) == len(NODES), 60, "the balancer to see every ingress healthy")
    wait_for(lambda: all(len(edge.healthy_endpoints(edge.pod_ns(p), "shop_catalog").get(
        "shop_catalog", [])) == 3 for p in edge.pods if p.startswith("web-")), 60,
        "every web sidecar to see the three catalog pods")


@pytest.fixture(scope="module")
def edge():
    work = Path(tempfile.mkdtemp(prefix="kubeflat-edge-"))
    lab = Lab(INVENTORY)
    harness = None
    try:
        lab.up()
        runner = run_playbook(lab, "site.yml", tags="network,routes,specs", timeout=900,
                              extravars={"kubeflat_render_dir": str(work / "render")})
        assert_run_ok(runner)
        harness = EdgeLab(lab, work / "render", work / "run")
        harness.create_pods(PLACEMENT)
        start_all(harness)
        yield harness
    finally:
        if harness is not None:
            harness.close()
        lab.down()
        if os.environ.get("KUBEFLAT_EDGE_KEEP"):     # logs of every process, for debugging
            print("edge test files kept in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def test_rendered_envoys_resolve_through_the_control_plane_addresses(edge):
    # Where the rendered ingress and sidecar resolvers point, and nothing else.
    assert edge.r.dns_servers == sorted(CONTROL_PLANES.values())
    assert edge.r.ingress_nodes == sorted(NODES.values())
    want = " ".join(sorted(edge.pods[p]["address"] for p in edge.dns_ready if p.startswith("web-")))
    for server in edge.r.dns_servers:
        assert edge.resolve("w2", server, edge.r.fqdn("web")) == want


def test_every_hop_sees_the_previous_hops_own_address(edge):
    edge.start_client(CLIENT, VHOST, threads=2)
    time.sleep(2)
    records = edge.stop_client()
    assert len(records) > 50
    assert [r for r in records if r["status"] != 200] == []
    time.sleep(0.5)            # access logs are flushed every 100 ms
    index_logs(edge)
    seen = {"ingress": set(), "web": set(), "catalog": set()}
    for rec in records:
        hops = trace(edge, rec)
        assert [h["hop"] for h in hops] == ["outside balancer", "ingress", "web", "catalog"]
        assert all(h["saw"] == h["sent_from"] for h in hops), format_trace(rec, hops)
        # The client's, the balancer's and the ingress node's own addresses; no VIP, no NAT.
        assert hops[0]["saw"].startswith(edge.lab.hosts[CLIENT] + ":")
        assert hops[1]["saw"].startswith(edge.lab.hosts[BALANCER] + ":")
        assert rec["body"]["xff"] == edge.lab.hosts[BALANCER]      # written by the ingress
        node = hops[1]["server"]
        pod_gateway = edge.pods[rec["body"]["pod_name"]]["address"].rsplit(".", 1)[0] + ".1"
        ingress_addr = hops[2]["saw"].rsplit(":", 1)[0]
        assert ingress_addr == NODES[node] or (
            ingress_addr == pod_gateway and edge.pods[rec["body"]["pod_name"]]["node"] == node)
        assert hops[3]["saw"] == rec["body"]["pod"]                 # the web pod itself
        seen["ingress"].add(node)
        seen["web"].add(rec["body"]["pod_name"])
        seen["catalog"].add(rec["body"]["calls"][0]["pod_name"])
    assert seen["ingress"] == set(NODES)
    assert seen["web"] == {"web-cp1", "web-w1", "web-w2"}
    assert seen["catalog"] == {"catalog-cp2", "catalog-w1", "catalog-w2"}
    print(format_trace(records[0], trace(edge, records[0])))


def web_retries(edge):
    return sum(edge.stat(edge.pod_ns(p), RETRIES) for p in edge.pods
               if p.startswith("web-") and p + ".envoy" in edge.procs)


def served_by(records, key):
    out = {}
    for rec in records:
        if rec["status"] == 200:
            name = rec["body"]["pod_name"] if key == "web" else rec["body"]["calls"][0]["pod_name"]
            out[name] = out.get(name, 0) + 1
    return out


def test_faults_lose_no_request(edge):
    phases = []

    def phase(name, action):
        t0 = time.time()
        detail = action()
        phases.append((name, t0, time.time(), detail))

    edge.start_client(CLIENT, VHOST, threads=3, pause=0.02, max_seconds=240)
    try:
        phase("baseline", lambda: time.sleep(1))

        # A DaemonSet rollout: each node's ingress in turn (preStop as rendered, SIGTERM, new).
        balancer = edge.node_ns(BALANCER)
        checks_failed = edge.stat(balancer, "cluster.ingress_http.health_check.failure")

        def rollout():
            for host in NODES:
                edge.roll_ingress(host)
            return {"balancer health check failures":
                    edge.stat(balancer, "cluster.ingress_http.health_check.failure")
                    - checks_failed}
        phase("ingress restarted on each node in turn", rollout)
        assert phases[-1][3]["balancer health check failures"] >= len(NODES), \
            "the balancer never saw an ingress drain: %s" % phases[-1][3]

        # w1 drained: its pods (DNS record out, preStop, SIGTERM) and its ingress go away.
        def drain():
            jobs = [threading.Thread(target=edge.stop_ingress, args=("w1",))] + [
                threading.Thread(target=edge.stop_pod, args=(p,)) for p in ("web-w1", "catalog-w1")]
            for job in jobs:
                job.start()
            for job in jobs:
                job.join()
            time.sleep(1.5)
        phase("node w1 drained", drain)
        t_drained = phases[-1][2]
        time.sleep(1.5)
        after = edge.requests(t_drained)
        assert after and not ({"web-w1"} & set(served_by(after, "web"))), served_by(after, "web")
        assert "catalog-w1" not in served_by(after, "catalog")

        def uncordon():
            for pod in ("web-w1", "catalog-w1"):
                edge.start_pod(pod)
            wait_for(lambda: edge.pod_ready("web-w1") and edge.pod_ready("catalog-w1"), 30,
                     "w1 pods ready")
            edge.dns_add(["web-w1", "catalog-w1"])
            edge.start_ingress("w1")
            wait_for(lambda: edge.ingress_ready("w1"), 30, "w1 ingress ready")
            time.sleep(2)
        phase("node w1 back", uncordon)

        # cp1's DNS server stopped: names must still resolve (through cp2 and cp3).
        def dns_down():
            edge.stop("dns.cp1")
            before = {h: edge.dns_queries(h) for h in CONTROL_PLANES}
            assert edge.resolve("w2", CONTROL_PLANES["cp1"], edge.r.fqdn("web")).startswith(
                "ERROR")
            edge.start_pod(SPARE)         # a new catalog pod, announced while cp1 is down
            wait_for(lambda: edge.pod_ready(SPARE), 30, "the spare catalog pod ready")
            edge.dns_add([SPARE])
            t_added = time.time()
            wait_for(lambda: served_by(edge.requests(t_added), "catalog").get(SPARE), 20,
                     "the sidecars to resolve the new catalog pod without cp1's DNS")
            time.sleep(1)
            return {h: edge.dns_queries(h) - before[h] for h in CONTROL_PLANES}
        phase("DNS on cp1 down", dns_down)
        queries = phases[-1][3]
        assert queries["cp1"] == 0 and queries["cp2"] > 0 and queries["cp3"] > 0, queries
        edge.start_dns(CONTROL_PLANES["cp1"])

        # A catalog pod killed (SIGKILL, no goodbye): the web sidecars retry on another pod.
        def kill():
            retries = web_retries(edge)
            edge.stop_pod("catalog-cp2", graceful=False)
            time.sleep(3)
            edge.dns_remove(["catalog-cp2"])   # the endpoint controller notices, later
            time.sleep(1)
            return {"sidecar retries": web_retries(edge) - retries}
        phase("catalog pod killed", kill)
        assert phases[-1][3]["sidecar retries"] > 0, "no retry although a catalog pod died"
    finally:
        records = edge.stop_client()

    summary = []
    for name, t0, t1, detail in phases:
        window = [r for r in records if t0 <= r["t0"] < t1]
        failed = [r for r in window if r["status"] != 200]
        summary.append("%-40s %5d requests, %d failed %s" % (name, len(window), len(failed),
                                                              detail or ""))
        assert window, "no request during %s" % name
        assert failed == [], "%s: %d failed, e.g. %s" % (name, len(failed), failed[:3])
    assert [r for r in records if r["status"] != 200] == []
    print("\n".join(summary))
    # Traffic came back to the uncordoned node's pods.
    back = [r for r in records if r["t0"] >= phases[3][2]]
    assert served_by(back, "web").get("web-w1") and served_by(back, "catalog").get("catalog-w1")


def test_verify_edge_playbook_reports_per_node(edge):
    check = run_playbook(edge.lab, "playbooks/verify_edge.yml", check=True, timeout=300)
    assert_run_ok(check)
    text = output(check)
    assert "GET /healthz" in text and "10.81.0.21" in text

    ok = run_playbook(edge.lab, "playbooks/verify_edge.yml", timeout=300)
    assert_run_ok(ok)
    text = output(ok)
    for host, address in NODES.items():
        assert "node %-12s %-15s health:80=200" % (host, address) in text
    assert text.count("shop.edge.example/=200") >= 2 * len(NODES)   # from lb1 and ext1
    assert "every node's ingress answered" in text

    edge.stop("ingress.w2", signal.SIGKILL)
    broken = run_playbook(edge.lab, "playbooks/verify_edge.yml", timeout=300)
    assert broken.rc != 0
    text = output(broken)
    assert "w2 (10.81.0.22) health:80: ConnectionRefusedError" in text
    assert "cp1 (10.81.0.11)" not in text
