"""One request through the whole kubeflat path on a running, converged lab; prints the hops.

    .venv/bin/python tests/integration/edgedemo.py --inventory inventories/lab

Used by `make demo` (scripts/demo.sh) after site.yml. It reads the artefacts site.yml
rendered (``<inventory>.rendered``), plays the kubelet's part with tests/integration/edgelab.py
(real CNI pods, the real Envoy with the rendered ingress/balancer/sidecar configs, a DNS
server on the control-plane addresses standing in for CoreDNS), sends requests from an outside
host through the outside balancer, prints every hop with the address its server saw, and
stops every process it started (the pods' network namespaces stay, like verify's test pod).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for path in (REPO, REPO / "collections", HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import yaml  # noqa: E402

from edgelab import EdgeLab, format_trace, index_logs, trace, wait_for  # noqa: E402
from lab import Lab  # noqa: E402


def outside_hosts(inventory):
    hosts = yaml.safe_load((Path(inventory) / "hosts.yml").read_text())
    return list(hosts["all"]["children"].get("k8s_outside", {}).get("hosts", {}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", default="inventories/lab")
    ap.add_argument("--render-dir", help="default: <inventory>.rendered")
    ap.add_argument("--balancer", help="outside host running the balancer (default: the "
                    "last k8s_outside host)")
    ap.add_argument("--client", help="outside host sending the request (default: the first)")
    ap.add_argument("--requests", type=int, default=3)
    args = ap.parse_args(argv)
    inventory = Path(args.inventory).resolve()
    outside = outside_hosts(inventory)
    balancer = args.balancer or outside[-1]
    client = args.client or outside[0]
    lab = Lab(inventory, quiet=True)
    missing = set(lab.hosts) - set(lab.running_nodes())
    if missing:
        sys.exit("edgedemo: lab nodes not running: %s (make lab-up first)" % ", ".join(
            sorted(missing)))
    edge = EdgeLab(lab, args.render_dir or str(inventory) + ".rendered",
                   tempfile.mkdtemp(prefix="kubeflat-edgedemo-"))
    nodes = [edge.by_addr[a] for a in edge.r.ingress_nodes]
    # One pod per app, spread over the nodes (the scheduler's part).
    placement = {app: [nodes[i % len(nodes)]] for i, app in enumerate(sorted(edge.r.apps))}
    vhost = next(iter(edge.r.vhosts), None)
    if vhost is None:
        sys.exit("edgedemo: no app has an ingress entry in app_specs_apps")
    try:
        print("==> pods (real CNI, the node's conflist): %s" % ", ".join(
            "%s=%s" % kv for kv in sorted(edge.create_pods(placement).items())))
        for address in edge.r.dns_servers:
            edge.start_dns(address)
        for pod in edge.pods:
            edge.start_pod(pod)
        wait_for(lambda: all(edge.pod_ready(p) for p in edge.pods), 60, "pods ready")
        edge.dns_add(list(edge.pods))
        for host in nodes:
            edge.start_ingress(host)
        edge.start_balancer(balancer)
        print("==> DNS on %s, ingress on %s, balancer on %s" % (
            ", ".join(edge.r.dns_servers), ", ".join(nodes), balancer))
        wait_for(lambda: all(edge.ingress_ready(h) for h in nodes), 60, "ingress ready")
        wait_for(lambda: edge.healthy_endpoints(edge.node_ns(balancer), None), 60,
                 "the balancer's health checks")
        wait_for(lambda: all(edge.healthy_endpoints(edge.pod_ns(p), None) for p in edge.pods
                             if edge.r.apps[edge.pods[p]["app"]]["sidecar"]), 60,
                 "the sidecars' upstreams")
        edge.start_client(client, vhost, threads=1, pause=0.2, max_seconds=30)
        wait_for(lambda: len(edge.requests()) >= args.requests, 30, "requests")
        records = edge.stop_client()
        time.sleep(0.5)
        index_logs(edge)
        print("==> %d request(s) from %s to http://%s (Host: %s), each hop with the address "
              "its server saw:" % (len(records), client, lab.hosts[balancer], vhost))
        bad = 0
        for rec in records:
            if rec["status"] != 200:
                print("request from %s failed: %s" % (rec.get("local"), rec))
                bad += 1
                continue
            hops = trace(edge, rec)
            bad += sum(h["saw"] != h["sent_from"] for h in hops)
            print(format_trace(rec, hops))
        return 1 if bad else 0
    finally:
        edge.close()


if __name__ == "__main__":
    sys.exit(main())
