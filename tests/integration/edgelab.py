"""The kubeflat request path on a running lab, with the rendered configs and real parts.

    outside client -> outside balancer (lb host) -> ingress on every node (host network)
                   -> app pod -> its Envoy sidecar -> called app pod,
    names resolved by a DNS server on every control-plane address.

There is no kubelet or container runtime here (README, Boundary), so this harness plays their
part, and only theirs:

* pods are real CNI pods: a network namespace inside the node, plumbed by the node's own
  conflist and the real CNI plugins (module ``kubeflat.cluster.cni_pod``, run by ``edge_pods.yml``);
* every process runs the host's binaries entered into a lab namespace: the real Envoy with the
  *rendered* config and the rendered container arguments (the ingress DaemonSet's, each
  sidecar's), in the node's network namespace (= hostNetwork) or in the pod's
  (``/proc/<node init>/root/run/netns/<pod>``); the only argument changes are
  ``--concurrency 1`` (2 shared cores) and a short access-log flush interval;
* the app containers are a small Python HTTP server: it answers the readiness path and, for
  ``/``, calls every upstream URL the rendered Deployment gives it (``UPSTREAM_*_URL``, the
  sidecar's loopback listeners) and reports the address it saw for its own caller;
* CoreDNS cannot be installed here: dnsmasq, on every address the rendered Envoy resolvers
  point at (the control planes), answers the headless names with the ready pods' addresses,
  as CoreDNS does from EndpointSlices;
* lifecycle as the kubelet runs it: preStop hooks exactly as rendered (the ingress's bash
  command, the apps' ``sleep``), then SIGTERM; a DNS record leaves when its pod terminates.

Everything is started in lab namespaces and stopped by :meth:`EdgeLab.close`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ENVOY = REPO / ".venv" / "bin" / "envoy"
PODS_PLAYBOOK = Path(__file__).parent / "edge_pods.yml"
sys.path.insert(0, str(Path(__file__).parent))

APP_PY = r"""
import http.client, json, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
APP, NAME, POD, PORT, READY = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
UPSTREAMS = json.loads(sys.argv[6])
def call(url):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=8)
    try:
        conn.request("GET", "/", headers={"Host": u.netloc})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError("%s answered %d %r" % (url, resp.status, body[:200]))
        return json.loads(body)
    finally:
        conn.close()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path in (READY, "/healthz", "/ready"):
            status, body = 200, b"ok\n"
        else:
            out = {"app": APP, "pod_name": NAME, "pod": POD,
                   "peer": "%s:%d" % self.client_address[:2],
                   "xff": self.headers.get("x-forwarded-for"),
                   "request_id": self.headers.get("x-request-id"), "calls": []}
            status = 200
            try:
                out["calls"] = [call(url) for url in UPSTREAMS]
            except Exception as exc:
                status, out["error"] = 502, repr(exc)
            body = (json.dumps(out) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("0.0.0.0", PORT), H).serve_forever()
"""

# A bounded request stream: THREADS loops, one new TCP connection per request (so every
# request is balanced afresh), until STOP exists or MAX seconds passed. One JSON line each.
CLIENT_PY = r"""
import json, os, socket, sys, threading, time
ADDR, PORT, HOST, THREADS, PAUSE, MAX, STOP, OUT = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), sys.argv[7], sys.argv[8]
lock = threading.Lock()
out = open(OUT, "a", buffering=1)
end = time.time() + MAX
def one():
    rec = {"t0": time.time()}
    try:
        s = socket.create_connection((ADDR, PORT), timeout=10)
        rec["local"] = "%s:%d" % s.getsockname()[:2]
        s.settimeout(10)
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HOST).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        rec["status"] = int(head.split(b" ", 2)[1]) if head else None
        rec["body"] = json.loads(body) if rec["status"] == 200 else body.decode(errors="replace")[:300]
    except Exception as exc:
        rec["status"], rec["error"] = None, repr(exc)
    rec["t1"] = time.time()
    with lock:
        out.write(json.dumps(rec) + "\n")
def loop():
    while time.time() < end and not os.path.exists(STOP):
        one()
        time.sleep(PAUSE)
ts = [threading.Thread(target=loop) for _ in range(THREADS)]
[t.start() for t in ts]
[t.join() for t in ts]
"""

FETCH_PY = r"""
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers=dict(h.split(":", 1) for h in sys.argv[2:]))
try:
    with urllib.request.urlopen(req, timeout=3) as resp:
        sys.stdout.write("%d\n%s" % (resp.status, resp.read().decode()))
except urllib.error.HTTPError as exc:
    sys.stdout.write("%d\n" % exc.code)
except Exception as exc:
    sys.stdout.write("0\n%r" % exc)
"""

# One DNS A query over UDP; prints the addresses of the answer (or ERROR ...).
DNS_PY = r"""
import random, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
qid = random.randrange(65536)
query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
try:
    s.sendto(query, (server, 53))
    data = s.recv(4096)
except OSError as exc:
    print("ERROR %r" % exc)
    sys.exit(0)
answers = struct.unpack(">H", data[6:8])[0]
pos = len(query)
out = []
for _ in range(answers):
    if data[pos] & 0xC0 == 0xC0:
        pos += 2
    else:
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    rtype, _, _, length = struct.unpack(">HHIH", data[pos:pos + 10])
    pos += 10
    if rtype == 1 and length == 4:
        out.append(socket.inet_ntoa(data[pos:pos + 4]))
    pos += length
print(" ".join(sorted(out)))
"""


def wait_for(predicate, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def read_jsonl(path):
    out = []
    if os.path.exists(path):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def _docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def _arg_replace(args, flag, value):
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


class Rendered:
    """What the harness reads from the render dir: the same files a cluster would get."""

    def __init__(self, render_dir):
        self.dir = Path(render_dir)
        self.ingress_config = self.dir / "envoy" / "ingress.yaml"
        self.balancer_config = self.dir / "envoy" / "outside-balancer.yaml"
        boot = yaml.safe_load(self.ingress_config.read_text())
        resolvers = set()
        for cluster in boot["static_resources"]["clusters"]:
            cfg = cluster["cluster_type"]["typed_config"].get("typed_dns_resolver_config")
            if cfg:
                resolvers |= {r["socket_address"]["address"]
                              for r in cfg["typed_config"]["resolvers"]}
        # The DNS servers the rendered Envoys query: the control-plane addresses.
        self.dns_servers = sorted(resolvers)
        outside = yaml.safe_load(self.balancer_config.read_text())
        cluster = outside["static_resources"]["clusters"][0]
        self.ingress_nodes = [e["endpoint"]["address"]["socket_address"]["address"]
                              for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
        self.ingress_port = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
            "endpoint"]["address"]["socket_address"]["port_value"]
        (ds,) = [d for p in (self.dir / "specs").glob("*/envoy-ingress.yaml")
                 for d in _docs(p) if d["kind"] == "DaemonSet"]
        container = ds["spec"]["template"]["spec"]["containers"][0]
        self.ingress_args = container["args"]
        self.ingress_pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        probe = container["readinessProbe"]["httpGet"]
        self.ingress_probe = (probe["path"], probe["port"],
                              ["%s:%s" % (h["name"], h["value"]) for h in probe["httpHeaders"]])
        # Host names the ingress routes (its virtual hosts without the health one and "*").
        self.vhosts = []
        for listener in boot["static_resources"]["listeners"]:
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            for vhost in hcm["route_config"]["virtual_hosts"]:
                for domain in vhost["domains"]:
                    if ":" not in domain and domain not in ("*", "kubeflat-ingress-health") \
                            and domain not in self.vhosts:
                        self.vhosts.append(domain)
        self.apps = {}
        for path in sorted((self.dir / "specs").glob("*/*.yaml")):
            docs = _docs(path)
            services = [d for d in docs if d["kind"] == "Service"
                        and d["spec"].get("clusterIP") == "None"]
            deployments = [d for d in docs if d["kind"] == "Deployment"]
            if not services or not deployments:
                continue
            svc = services[0]
            pod = deployments[0]["spec"]["template"]["spec"]
            app = pod["containers"][0]
            sidecars = [c for c in pod.get("initContainers", []) if c["name"] == "envoy"]
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            sidecar_path = self.dir / "envoy" / "sidecars" / ns / (name + ".yaml")
            self.apps[name] = {
                "namespace": ns, "port": app["ports"][0]["containerPort"],
                "ready": app.get("readinessProbe", {}).get("httpGet", {}).get("path", "/ready"),
                "upstreams": [e["value"] for e in app.get("env", [])
                              if e["name"].startswith("UPSTREAM_")],
                "pre_stop": app.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get(
                    "seconds", 0),
                "sidecar": str(sidecar_path) if sidecars else None,
                "sidecar_args": sidecars[0]["args"] if sidecars else None,
            }

    def fqdn(self, app, domain="cluster.local"):
        return "%s.%s.svc.%s" % (app, self.apps[app]["namespace"], domain)


class EdgeLab:
    """Runs the path on a running lab. ``close()`` stops every process it started."""

    def __init__(self, lab, render_dir, workdir, domain="cluster.local"):
        self.lab = lab
        self.r = Rendered(render_dir)
        self.work = Path(workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o755)          # dnsmasq re-reads its hosts file as nobody
        self.domain = domain
        self.by_addr = {str(n.addr): h for h, n in lab.nodes.items()}
        self.procs = {}                      # key -> Popen
        self.pods = {}                       # pod name -> {"app", "node", "address"}
        self.dns_ready = set()               # pod names in DNS
        self.lock = threading.Lock()
        self._init_pids = {}

    # ------------------------------------------------------------ namespaces and processes
    def node_ns(self, host):
        return ["ip", "netns", "exec", self.lab.nodes[host].netns]

    def _init_pid(self, host):
        nspawn = self.lab.running_nodes()[host]
        if self._init_pids.get(host, (None,))[0] != nspawn:
            child = Path("/proc/%d/task/%d/children" % (nspawn, nspawn)).read_text().split()[0]
            self._init_pids[host] = (nspawn, int(child))
        return self._init_pids[host][1]

    def pod_ns(self, pod):
        node = self.pods[pod]["node"]
        return ["nsenter", "--net=/proc/%d/root/run/netns/%s" % (self._init_pid(node), pod)]

    def spawn(self, key, prefix, argv, stdout_name=None):
        out = open(self.work / (stdout_name or key + ".out"), "a")
        err = open(self.work / (key + ".err"), "a")
        proc = subprocess.Popen(prefix + [str(a) for a in argv], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        err.close()
        self.procs[key] = proc
        return proc

    def stop(self, key, sig=signal.SIGTERM, timeout=10):
        proc = self.procs.pop(key, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self):
        for key in list(self.procs):
            self.stop(key, signal.SIGKILL, timeout=5)

    def fetch(self, prefix, url, *headers):
        res = subprocess.run(prefix + [sys.executable, "-c", FETCH_PY, url, *headers],
                             capture_output=True, text=True, timeout=20)
        status, _, body = res.stdout.partition("\n")
        return int(status or 0), body

    def envoy_args(self, config, args=None):
        args = _arg_replace(args or ["--config-path", config], "--config-path", str(config))
        args = _arg_replace(args, "--concurrency", "1")
        return [ENVOY] + args + ["--file-flush-interval-msec", "100"]

    # ------------------------------------------------------------ pods (the runtime's part)
    def create_pods(self, placement):
        """``placement``: {app: [node, ...]} -> pods ``<app>-<node>`` made with the node's CNI."""
        from labrunner import assert_run_ok, run_playbook
        by_node = {}
        for app, nodes in placement.items():
            for node in nodes:
                by_node.setdefault(node, []).append("%s-%s" % (app, node))
                self.pods["%s-%s" % (app, node)] = {"app": app, "node": node}
        runner = run_playbook(self.lab, PODS_PLAYBOOK, extravars={"edge_pods": by_node},
                              timeout=300)
        assert_run_ok(runner)
        for ev in runner.events:
            res = (ev.get("event_data") or {}).get("res") or {}
            if ev.get("event") == "runner_item_on_ok" and res.get("address"):
                self.pods[res["item"]]["address"] = res["address"]
        missing = [p for p, v in self.pods.items() if not v.get("address")]
        assert not missing, "pods without an address: %s" % missing
        return {p: v["address"] for p, v in self.pods.items()}

    def start_pod(self, pod):
        """Start a pod's containers: the sidecar first (native sidecar), then the app."""
        info = self.pods[pod]
        app = self.r.apps[info["app"]]
        if app["sidecar"]:
            self.spawn(pod + ".envoy", self.pod_ns(pod),
                       self.envoy_args(app["sidecar"], app["sidecar_args"]))
        self.spawn(pod + ".app", self.pod_ns(pod),
                   [sys.executable, "-c", APP_PY, info["app"], pod, info["address"],
                    app["port"], app["ready"], json.dumps(app["upstreams"])])

    def pod_ready(self, pod):
        info = self.pods[pod]
        app = self.r.apps[info["app"]]
        status, _ = self.fetch(self.pod_ns(pod), "http://%s:%d%s" % (
            info["address"], app["port"], app["ready"]))
        if status != 200:
            return False
        if app["sidecar"]:   # the sidecar's admin says it is live
            return self.fetch(self.pod_ns(pod), "http://127.0.0.1:9901/ready")[0] == 200
        return True

    def stop_pod(self, pod, graceful=True):
        """Terminate like the kubelet: DNS record out, preStop sleep as rendered, SIGTERM
        (app first, native sidecar last). ``graceful=False``: SIGKILL, a crash."""
        if not graceful:
            self.stop(pod + ".app", signal.SIGKILL)
            return
        self.dns_remove([pod])
        time.sleep(self.r.apps[self.pods[pod]["app"]]["pre_stop"])
        self.stop(pod + ".app")
        self.stop(pod + ".envoy")

    # ------------------------------------------------------------ DNS (CoreDNS's part)
    def hosts_file(self):
        return self.work / "headless.hosts"

    def write_dns(self):
        lines = ["%s %s\n" % (v["address"], self.r.fqdn(v["app"], self.domain))
                 for p, v in sorted(self.pods.items()) if p in self.dns_ready]
        tmp = self.work / "headless.hosts.tmp"
        tmp.write_text("".join(lines))
        os.chmod(tmp, 0o644)
        tmp.rename(self.hosts_file())
        for key, proc in self.procs.items():
            if key.startswith("dns.") and proc.poll() is None:
                proc.send_signal(signal.SIGHUP)

    def dns_add(self, pods):
        with self.lock:
            self.dns_ready |= set(pods)
            self.write_dns()

    def dns_remove(self, pods):
        with self.lock:
            self.dns_ready -= set(pods)
            self.write_dns()

    def start_dns(self, address):
        host = self.by_addr[address]
        if not self.hosts_file().exists():
            self.write_dns()
        self.spawn("dns." + host, self.node_ns(host),
                   ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
                    "--no-hosts", "--addn-hosts=%s" % self.hosts_file(), "--bind-interfaces",
                    "--listen-address=%s" % address, "--port=53", "--local-ttl=1",
                    "--log-queries", "--log-facility=-", "--pid-file="])
        # Answering before anything may SIGHUP it (SIGHUP kills it until its handler is set).
        wait_for(lambda: not self.resolve(host, address, "kubeflat-probe.invalid").startswith(
            "ERROR"), 15, "dnsmasq on %s" % host)

    def resolve(self, host, server, name):
        """Ask ``server`` for ``name`` from ``host``'s network namespace: "a.b.c.d ..."."""
        res = subprocess.run(self.node_ns(host) + [sys.executable, "-c", DNS_PY, server, name],
                             capture_output=True, text=True, timeout=15)
        return res.stdout.strip()

    def dns_queries(self, host):
        """How many queries the DNS server on ``host`` has logged."""
        path = self.work / ("dns.%s.err" % host)
        return path.read_text(errors="replace").count(" query[") if path.exists() else 0

    # ------------------------------------------------------------ ingress, balancer
    def start_ingress(self, host):
        self.spawn("ingress." + host, self.node_ns(host),
                   self.envoy_args(self.r.ingress_config, self.r.ingress_args),
                   stdout_name="ingress.%s.log" % host)

    def ingress_ready(self, host):
        path, port, headers = self.r.ingress_probe
        status, _ = self.fetch(self.node_ns(host), "http://%s:%d%s" % (
            self.lab.hosts[host], port, path), *headers)
        return status == 200

    def roll_ingress(self, host):
        """One step of a DaemonSet rollout: the rendered preStop, SIGTERM, new pod, Ready."""
        subprocess.run(self.node_ns(host) + self.r.ingress_pre_stop, check=True, timeout=120,
                       capture_output=True)
        self.stop("ingress." + host)
        self.start_ingress(host)
        wait_for(lambda: self.ingress_ready(host), 30, "ingress on %s ready" % host)

    def stop_ingress(self, host):
        subprocess.run(self.node_ns(host) + self.r.ingress_pre_stop, check=True, timeout=120,
                       capture_output=True)
        self.stop("ingress." + host)

    def start_balancer(self, host):
        self.spawn("balancer", self.node_ns(host),
                   self.envoy_args(self.r.balancer_config,
                                   ["--config-path", self.r.balancer_config,
                                    "--disable-hot-restart", "--log-level", "warn"]),
                   stdout_name="balancer.log")
        self.balancer_host = host

    def healthy_endpoints(self, prefix, cluster, admin="http://127.0.0.1:9901"):
        """{cluster: [healthy host:port]} from an Envoy admin; falsy unless every cluster
        (or ``cluster``) has at least one healthy endpoint."""
        status, body = self.fetch(prefix, admin + "/clusters")
        if status != 200:
            return {}
        hosts = {}
        for line in body.splitlines():
            parts = line.split("::")
            if len(parts) >= 4 and parts[2] == "health_flags":
                hosts.setdefault(parts[0], [])
                if parts[3] == "healthy":
                    hosts[parts[0]].append(parts[1])
        if cluster is not None:
            hosts = {cluster: hosts.get(cluster, [])}
        return hosts if hosts and all(hosts.values()) else {}

    def stat(self, prefix, name, admin="http://127.0.0.1:9901"):
        status, body = self.fetch(prefix, admin + "/stats?filter=^%s$" % name.replace(".", r"\."))
        for line in body.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    # ------------------------------------------------------------ the outside client
    def start_client(self, host, vhost, threads=3, pause=0.02, max_seconds=300):
        self.client_runs = getattr(self, "client_runs", 0) + 1
        self.client_out = self.work / ("client-%d.jsonl" % self.client_runs)
        self.client_stop = self.work / ("client-%d.stop" % self.client_runs)
        self.spawn("client", self.node_ns(host),
                   [sys.executable, "-c", CLIENT_PY, self.lab.hosts[self.balancer_host],
                    self.r.ingress_port, vhost, threads, pause, max_seconds, self.client_stop,
                    self.client_out])
        self.client_host = host

    def stop_client(self):
        self.client_stop.touch()
        proc = self.procs.pop("client")
        proc.wait(timeout=30)
        return read_jsonl(self.client_out)

    def requests(self, t0=0.0, t1=float("inf")):
        return [r for r in read_jsonl(self.client_out) if t0 <= r["t0"] < t1]

    def logs(self, name):
        return read_jsonl(self.work / name)


def index_logs(edge):
    """Index the balancer's and every ingress's JSON access log by the downstream address."""
    edge.lb_by_downstream = {l["downstream"]: l for l in edge.logs("balancer.log")}
    edge.ingress_by_downstream = {h: {l["downstream"]: l for l in
                                      edge.logs("ingress.%s.log" % h)}
                                  for h in edge.lab.hosts}


def trace(edge, rec):
    """The hops of one successful request (call :func:`index_logs` first), each with the
    address its server saw (``saw``) and the previous hop's own address (``sent_from``):

    client -> balancer (its log), balancer -> ingress of node N (N's log, joined by the
    balancer's upstream local address), ingress -> app pod (the app's report, joined by the
    ingress's upstream local address), sidecar -> called pod (the callee's report; the
    sidecar's source port is not logged, so only the address: the calling pod's own).
    """
    lb_line = edge.lb_by_downstream[rec["local"]]
    node = edge.by_addr[lb_line["upstream_host"].rsplit(":", 1)[0]]
    ing_line = edge.ingress_by_downstream[node][lb_line["upstream_local"]]
    out = [{"hop": "outside balancer", "server": edge.balancer_host,
            "saw": lb_line["downstream"], "sent_from": rec["local"]},
           {"hop": "ingress", "server": node, "saw": ing_line["downstream"],
            "sent_from": lb_line["upstream_local"]}]
    body, sent_from = rec["body"], ing_line["upstream_local"]
    while body is not None:
        out.append({"hop": body["app"], "server": "%s %s" % (body["pod_name"], body["pod"]),
                    "saw": body["peer"] if sent_from else body["peer"].rsplit(":", 1)[0],
                    "sent_from": sent_from or body["_caller"]})
        calls = body.get("calls") or []
        for call in calls:
            call["_caller"] = body["pod"]
        body, sent_from = (calls[0] if calls else None), None
    return out


def format_trace(rec, hops_):
    lines = ["request from %s (outside client) -> %s" % (rec["local"], rec.get("status"))]
    for h in hops_:
        mark = "ok" if h["saw"] == h["sent_from"] else "MISMATCH"
        lines.append("  %-16s %-28s saw %-21s (previous hop: %s) %s"
                     % (h["hop"], h["server"], h["saw"], h["sent_from"], mark))
    return "\n".join(lines)
