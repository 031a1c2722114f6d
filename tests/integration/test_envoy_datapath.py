"""The real data path of a rendered Envoy sidecar: DNS-discovered backends, a killed pod, retries.

Everything runs inside one network namespace this test creates (loopback only; nothing is sent
from the root namespace):

* three HTTP backends (the ``catalog`` pods) on 127.0.0.2-4:8080, answering ``/ready`` and
  naming themselves in every response;
* dnsmasq on 127.0.0.1:53 resolving the headless name ``catalog.shop.svc.cluster.local`` to
  all three (the test's own DNS server; ``ip netns exec`` binds /etc/netns/<ns>/resolv.conf
  over /etc/resolv.conf, so Envoy's resolver finds it without changing the rendered config);
* the real Envoy running the sidecar config rendered for ``web`` from the lab inventory's
  catalog (only the timing options are shortened so the test stays quick).

A client in the namespace sends a bounded stream of requests through the sidecar and SIGKILLs
one backend partway through: every request must still succeed, Envoy's stats must show
retries, and after the backend comes back it must get traffic again.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model  # noqa: E402
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps  # noqa: E402

ENVOY = os.path.join(ROOT, ".venv", "bin", "envoy")
BACKENDS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
PORT = 8080
HEADLESS = "catalog.shop.svc.cluster.local"
LOCAL = "http://127.0.0.1:15001"
ADMIN = "http://127.0.0.1:9901"
# Shortened timings for the test; everything else is the rendered default.
FAST = {"dns_refresh_rate": "1s", "health_check_interval": "1s", "health_check_timeout": "500ms",
        "outlier_interval": "1s", "outlier_base_ejection_time": "2s", "per_try_timeout": "1s",
        "request_timeout": "5s"}

BACKEND_PY = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ADDR, PORT = sys.argv[1], int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("ok\n" if self.path == "/ready" else ADDR + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer((ADDR, PORT), H).serve_forever()
"""

# Bounded stream: TOTAL requests from THREADS threads; after KILL_AT completed requests the
# client SIGKILLs PID (the victim backend). Prints a JSON summary.
CLIENT_PY = r"""
import json, os, signal, sys, threading, urllib.request
URL, TOTAL, THREADS, KILL_AT, PID = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
lock = threading.Lock()
state = {"next": 0, "done": 0, "killed_at": None, "by_backend": {}, "failures": []}
def worker():
    while True:
        with lock:
            if state["next"] >= TOTAL:
                return
            state["next"] += 1
        try:
            with urllib.request.urlopen(URL, timeout=10) as resp:
                body = resp.read().decode().strip()
                status = resp.status
        except Exception as exc:  # any failure counts
            body, status = repr(exc), None
        with lock:
            state["done"] += 1
            if status == 200:
                state["by_backend"][body] = state["by_backend"].get(body, 0) + 1
            else:
                state["failures"].append(body)
            if PID and state["killed_at"] is None and state["done"] >= KILL_AT:
                os.kill(PID, signal.SIGKILL)
                state["killed_at"] = state["done"]
threads = [threading.Thread(target=worker) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(state))
"""

FETCH_PY = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
        sys.stdout.write(resp.read().decode())
except Exception as exc:
    sys.stdout.write("ERROR %r" % exc)
"""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("dnsmasq")
    or not os.access(ENVOY, os.X_OK),
    reason="needs root, iproute2, dnsmasq and the project's envoy (make setup)")


def sidecar_config():
    """The `web` sidecar config rendered from the lab inventory's catalog."""
    with open(os.path.join(ROOT, "inventories", "lab", "group_vars", "all", "apps.yml")) as fh:
        catalog = yaml.safe_load(fh)
    # dns_mode service: the sidecar uses the namespace's resolv.conf (dnsmasq on 127.0.0.1);
    # the control-plane DNS path is tested in test_edge_path.py.
    model = build_model({"cluster_name": "lab", "distribution": "none",
                         "host_networks": ["10.77.0.0/24"], "dns_mode": "service"},
                        [{"name": "cp1", "address": "10.77.0.11",
                          "groups": ["kube_control_plane", "k8s_cluster"]}])
    files = render_apps(catalog["app_specs_apps"],
                        {"namespace": catalog["app_specs_namespace"], "envoy": FAST}, model)
    return files["envoy/sidecars/shop/web.yaml"]


class Netns:
    """One loopback-only network namespace with its own resolv.conf; always torn down."""

    def __init__(self, workdir):
        self.name = "kfdp-" + uuid.uuid4().hex[:8]
        self.workdir = workdir
        self.etc = os.path.join("/etc/netns", self.name)
        self.procs = []

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        os.makedirs(self.etc)
        with open(os.path.join(self.etc, "resolv.conf"), "w") as fh:
            fh.write("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
        return self

    def spawn(self, argv, name):
        log = open(os.path.join(self.workdir, name + ".log"), "w")
        proc = subprocess.Popen(["ip", "netns", "exec", self.name] + argv, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def run(self, argv, timeout=120):
        return subprocess.run(["ip", "netns", "exec", self.name] + argv, capture_output=True,
                              text=True, timeout=timeout)

    def fetch(self, url):
        return self.run([sys.executable, "-c", FETCH_PY, url], timeout=15).stdout

    def __exit__(self, *exc):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
        shutil.rmtree(self.etc, ignore_errors=True)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def cluster_hosts(ns):
    """{address: health flags} of the catalog cluster, from Envoy's admin /clusters."""
    hosts = {}
    for line in ns.fetch(ADMIN + "/clusters").splitlines():
        parts = line.split("::")
        if len(parts) >= 4 and parts[0] == "shop_catalog" and parts[2] == "health_flags":
            hosts[parts[1].rsplit(":", 1)[0]] = parts[3]
    return hosts


def stat(ns, name):
    for line in ns.fetch(ADMIN + "/stats?filter=" + name).splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    raise AssertionError("stat %s not found" % name)


def run_client(ns, total, kill_at=0, pid=0, threads=4):
    result = ns.run([sys.executable, "-c", CLIENT_PY, LOCAL, str(total), str(threads),
                     str(kill_at), str(pid)], timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sidecar_retries_around_a_killed_backend_and_takes_it_back():
    config = sidecar_config()
    assert HEADLESS in config  # the rendered config targets the headless name
    workdir = tempfile.mkdtemp(prefix="kubeflat-datapath-")
    try:
        with Netns(workdir) as ns:
            hosts_file = os.path.join(workdir, "hosts")
            with open(hosts_file, "w") as fh:
                fh.writelines("%s %s\n" % (addr, HEADLESS) for addr in BACKENDS)
            config_path = os.path.join(workdir, "envoy.yaml")
            with open(config_path, "w") as fh:
                fh.write(config)
            ns.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
                      "--no-hosts", "--addn-hosts=" + hosts_file, "--listen-address=127.0.0.1",
                      "--bind-interfaces", "--port=53", "--local-ttl=1",
                      "--pid-file=" + os.path.join(workdir, "dnsmasq.pid")], "dnsmasq")
            backends = {addr: ns.spawn([sys.executable, "-c", BACKEND_PY, addr, str(PORT)],
                                       "backend-" + addr) for addr in BACKENDS}
            ns.spawn([ENVOY, "-c", config_path, "--disable-hot-restart", "--concurrency", "2",
                      "--log-level", "warning"], "envoy")

            # Envoy resolved the headless name to all three pods and checked them healthy.
            wait_for(lambda: sorted(a for a, f in cluster_hosts(ns).items() if f == "healthy")
                     == BACKENDS, 30, "three healthy catalog endpoints from DNS")

            victim = BACKENDS[1]
            before = stat(ns, "cluster.shop_catalog.upstream_rq_retry")
            first = run_client(ns, total=600, kill_at=150, pid=backends[victim].pid)
            assert first["killed_at"] is not None
            assert first["failures"] == [], first["failures"][:5]
            assert first["done"] == 600
            assert sum(first["by_backend"].values()) == 600
            assert first["by_backend"].get(victim, 0) > 0  # it did serve before the kill
            retries = stat(ns, "cluster.shop_catalog.upstream_rq_retry") - before
            assert retries > 0, "no retry recorded although a backend was killed mid-stream"
            assert backends[victim].wait(timeout=5) == -signal.SIGKILL

            # The dead pod is marked unhealthy by the active health checks...
            wait_for(lambda: cluster_hosts(ns).get(victim, "healthy") != "healthy", 15,
                     "the killed backend to be marked unhealthy")
            # ...and gets traffic again once it is back.
            backends[victim] = ns.spawn([sys.executable, "-c", BACKEND_PY, victim, str(PORT)],
                                        "backend-" + victim + "-2")
            wait_for(lambda: cluster_hosts(ns).get(victim) == "healthy", 30,
                     "the restarted backend to be healthy again")
            second = run_client(ns, total=300)
            assert second["failures"] == []
            assert second["by_backend"].get(victim, 0) > 0, second["by_backend"]
            assert set(second["by_backend"]) == set(BACKENDS)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
