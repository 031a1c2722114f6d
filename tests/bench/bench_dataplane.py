#!/usr/bin/env python3
"""Benchmark: pod-to-pod throughput and RTT over kubeflat's routed path and three other paths.

Not a test: it prints numbers and asserts nothing about them. It does fail loudly when a path
does not carry the traffic it claims to (iperf3 error or 0 b/s, ping without replies, the
path's device not carrying the bytes, the server seeing another source address than the
path implies), because then the number would be bogus.

What runs (all in the lab "dataplane", tests/bench/inventories/dataplane: two nodes, cp1, w1):
  1. the lab boots and kubeflat converges it itself: `site.yml --tags network,routes` from the
     lab's controller namespace (static mode: conflist, IP forwarding, `<pod CIDR> via <node>`);
  2. one pod pair per path except "nodes" (client on cp1, server on w1): real network
     namespaces wired by the real CNI bridge/host-local plugins with each node's own conflist
     (module kubeflat.cluster.cni_pod, via tests/integration/edge_pods.yml), exactly as the verify
     stage and the edge tests make them;
  3. the paths differ only between the two nodes (each one has its own pod pair):
       routed   kubeflat's own /24 routes over the lab segment (node eth0 -> switch -> eth0);
       vxlan    an overlay built here: a VXLAN device per node (VNI 4242, UDP 4789, MTU 1450)
                over the same segment, /32 routes for the pair over it, the pods' eth0 at 1450
                as an overlay CNI would set it;
       bare     a veth pair straight between the two node namespaces, /32 routes over it: no
                switch, no encapsulation;
       nodes    the same veth, iperf3/ping between the node namespaces themselves (no pod, no
                cni0, no forwarding): the floor;
       nat      the routed path with MASQUERADE on cp1 (an nft table of its own) for the
                client pod: the server sees cp1's address;
  4. ROUNDS rounds; in each round every path (order rotated per round, so load changes hit all
     alike) gets one iperf3 TCP run (`-t SECONDS -O 1`, one stream) and one ping series
     (COUNT echoes at 50 ms, median RTT of the series). iperf3 and ping are the build host's
     binaries entered into the pod namespaces (`nsenter --net=/proc/<node init>/root/run/netns/
     <pod>`), so the lab rootfs is unchanged;
  5. it prints min / median / max per path and the median (and range) of each round's ratios.
Everything lives in the lab's namespaces; the root namespace gets no address or route. The
bench's links, nft table, pods and processes are removed and the lab is taken down on every
exit (try/finally), also on failure or Ctrl-C.

Usage: .venv/bin/python tests/bench/bench_dataplane.py [--rounds 5] [--seconds 5] [--count 100]
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from lab import Lab  # noqa: E402

INVENTORY = os.path.join(ROOT, "tests", "bench", "inventories", "dataplane")
PODS_PLAYBOOK = os.path.join(ROOT, "tests", "integration", "edge_pods.yml")
CLIENT, SERVER = "cp1", "w1"
PATHS = ["routed", "vxlan", "bare", "nodes", "nat"]
LABELS = {"routed": "routed (kubeflat static routes)", "vxlan": "VXLAN overlay, MTU 1450",
          "bare": "bare veth between the nodes", "nodes": "bare veth, node to node (no pods)",
          "nat": "routed + MASQUERADE"}
VX_DEV, VX_NET, VX_MTU, VX_VNI = "kfbvx0", "10.92.0.%d/30", 1450, 4242
VETH_DEV, VETH_NET = "kfbv0", "10.92.1.%d/30"
NFT_TABLE = "kfbench"
PORT = 5201
RTT = re.compile(r"time=([\d.]+) ms")


class BenchError(RuntimeError):
    """A path did not carry traffic, or a step failed: no number is printed for it."""


def run(argv, check=True, timeout=120, **kw):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise BenchError("%s exited %d: %s%s" % (" ".join(map(str, argv)), proc.returncode,
                                                 proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc


def pod_name(path, side):
    return "kfb-%s-%s" % (path, "a" if side == CLIENT else "b")


class Dataplane:
    """The lab, its pods and the bench's own links; close() removes what it added."""

    def __init__(self, lab):
        self.lab = lab
        self.pods = {}          # (path, host) -> endpoint IPv4: the pod's, the veth's for "nodes"
        self.procs = []

    # ------------------------------------------------------------ namespaces
    def node_ns(self, host):
        return self.lab.nodes[host].netns

    def node_addr(self, host):
        return self.lab.hosts[host]

    def init_pid(self, host):
        nspawn = self.lab.running_nodes()[host]
        with open("/proc/%d/task/%d/children" % (nspawn, nspawn)) as handle:
            return int(handle.read().split()[0])

    def in_pod(self, path, host, argv):
        """argv entered into the path's endpoint on host: its pod, or for "nodes" the node."""
        if path == "nodes":
            return ["nsenter", "--net=/run/netns/" + self.node_ns(host), *argv]
        netns = "/proc/%d/root/run/netns/%s" % (self.init_pid(host), pod_name(path, host))
        return ["nsenter", "--net=" + netns, *argv]

    def ip(self, host, *args, check=True):
        return run(["ip", "-n", self.node_ns(host), *args], check=check)

    # ------------------------------------------------------------ Ansible
    def playbook(self, playbook, *args):
        argv = self.lab.ctl_argv([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"),
                                  "-i", INVENTORY, playbook, *args])
        proc = run(argv, check=False, timeout=900, env=self.lab.ansible_env(), cwd=ROOT)
        if proc.returncode != 0:
            raise BenchError("ansible-playbook %s %s failed (rc %d):\n%s%s"
                             % (os.path.basename(playbook), " ".join(args), proc.returncode,
                                proc.stdout[-4000:], proc.stderr[-2000:]))
        return proc.stdout

    def converge(self):
        self.playbook(os.path.join(ROOT, "site.yml"), "--tags", "network,routes")

    def pods_playbook(self, state):
        pods = {host: [pod_name(p, host) for p in PATHS if p != "nodes"]
                for host in (CLIENT, SERVER)}
        extra = json.dumps({"edge_pods": pods, "edge_pods_state": state})
        self.playbook(PODS_PLAYBOOK, "-e", extra)

    def make_pods(self):
        self.pods_playbook("present")
        for path in PATHS:
            for host in (CLIENT, SERVER) if path != "nodes" else ():
                out = run(self.in_pod(path, host, ["ip", "-j", "-4", "addr", "show", "eth0"]))
                addrs = [a["local"] for link in json.loads(out.stdout)
                         for a in link.get("addr_info", [])]
                if not addrs:
                    raise BenchError("pod %s on %s has no IPv4 address" % (pod_name(path, host),
                                                                             host))
                self.pods[(path, host)] = addrs[0]

    # ------------------------------------------------------------ the paths
    def host_route(self, path, dev, gateway):
        """/32 routes for the path's pod pair over dev, both directions."""
        for host, other in ((CLIENT, SERVER), (SERVER, CLIENT)):
            self.ip(host, "route", "replace", self.pods[(path, other)] + "/32",
                    "via", gateway[other], "dev", dev)

    def setup_vxlan(self):
        gateway = {CLIENT: VX_NET.split("/")[0] % 1, SERVER: VX_NET.split("/")[0] % 2}
        for index, (host, other) in enumerate(((CLIENT, SERVER), (SERVER, CLIENT)), 1):
            self.ip(host, "link", "add", VX_DEV, "type", "vxlan", "id", VX_VNI,
                    "local", self.node_addr(host), "remote", self.node_addr(other),
                    "dstport", "4789", "dev", "eth0")
            self.ip(host, "link", "set", VX_DEV, "mtu", VX_MTU, "up")
            self.ip(host, "addr", "add", VX_NET % index, "dev", VX_DEV)
            run(self.in_pod("vxlan", host, ["ip", "link", "set", "eth0", "mtu", VX_MTU]))
        self.host_route("vxlan", VX_DEV, gateway)

    def setup_bare(self):
        gateway = {CLIENT: VETH_NET.split("/")[0] % 1, SERVER: VETH_NET.split("/")[0] % 2}
        self.ip(CLIENT, "link", "add", VETH_DEV, "type", "veth", "peer", "name", VETH_DEV,
                "netns", self.node_ns(SERVER))
        for index, host in enumerate((CLIENT, SERVER), 1):
            self.ip(host, "addr", "add", VETH_NET % index, "dev", VETH_DEV)
            self.ip(host, "link", "set", VETH_DEV, "up")
            self.pods[("nodes", host)] = VETH_NET.split("/")[0] % index
        self.host_route("bare", VETH_DEV, gateway)

    def setup_nat(self):
        rules = ("table ip %s {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
                 '  ip saddr %s oifname "eth0" masquerade\n }\n}\n'
                 % (NFT_TABLE, self.pods[("nat", CLIENT)]))
        run(["ip", "netns", "exec", self.node_ns(CLIENT), "nft", "-f", "-"], input=rules)

    def device(self, path):
        return {"routed": "eth0", "nat": "eth0", "vxlan": VX_DEV, "bare": VETH_DEV,
                "nodes": VETH_DEV}[path]

    def expected_source(self, path):
        """The address the server must see: the pod's own, or cp1's with MASQUERADE."""
        return self.node_addr(CLIENT) if path == "nat" else self.pods[(path, CLIENT)]

    def tx_bytes(self, path):
        out = self.ip(CLIENT, "-s", "-j", "link", "show", "dev", self.device(path)).stdout
        return json.loads(out)[0]["stats64"]["tx"]["bytes"]

    # ------------------------------------------------------------ measuring
    def wait_listening(self, path, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = run(self.in_pod(path, SERVER, ["ss", "-Hltn", "sport = :%d" % PORT]),
                      check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise BenchError("%s: iperf3 server in %s not listening after %ss"
                         % (path, pod_name(path, SERVER), timeout))

    def iperf(self, path, seconds):
        """One iperf3 TCP run; returns bits/s received. Fails on anything suspicious."""
        target = self.pods[(path, SERVER)]
        server = subprocess.Popen(self.in_pod(path, SERVER, ["iperf3", "-s", "-1", "-J", "-B",
                                                             target, "-p", str(PORT)]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self.procs.append(server)
        self.wait_listening(path)
        before = self.tx_bytes(path)
        client = run(self.in_pod(path, CLIENT, ["iperf3", "-c", target, "-p", PORT, "-t",
                                                seconds, "-O", "1", "-J"]),
                     check=False, timeout=seconds + 30)
        sent = self.tx_bytes(path) - before
        s_out, _ = server.communicate(timeout=15)
        result = parse_iperf(path, client.stdout, client.stderr)
        seen = server_source(path, s_out)
        if seen != self.expected_source(path):
            raise BenchError("%s: server saw %s, expected %s: the traffic did not take this "
                             "path" % (path, seen, self.expected_source(path)))
        if sent < 0.9 * result["bytes"]:
            raise BenchError("%s: %s on %s sent %d bytes for iperf3's %d: the traffic did not "
                             "take this path" % (path, self.device(path), CLIENT, sent,
                                                 result["bytes"]))
        return result["bps"]

    def ping(self, path, count):
        """Median RTT (ms) of one ping series; fails on loss."""
        target = self.pods[(path, SERVER)]
        out = run(self.in_pod(path, CLIENT, ["ping", "-n", "-c", count, "-i", "0.05", "-W", "1",
                                             target]), check=False, timeout=count + 30)
        rtts = [float(x) for x in RTT.findall(out.stdout)]
        if len(rtts) < count:
            raise BenchError("%s: ping %s answered %d of %d: %s%s"
                             % (path, target, len(rtts), count, out.stdout[-500:], out.stderr))
        return statistics.median(rtts)

    # ------------------------------------------------------------ cleanup
    def close(self):
        """Best effort, every step: processes, nft table, links, pods."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        running = self.lab.running_nodes()
        for host in (CLIENT, SERVER):
            if host in running:
                for dev in (VX_DEV, VETH_DEV):
                    self.ip(host, "link", "del", dev, check=False)
        if CLIENT in running:
            run(["ip", "netns", "exec", self.node_ns(CLIENT), "nft", "delete", "table", "ip",
                 NFT_TABLE], check=False)
        if running and self.pods:
            try:
                self.pods_playbook("absent")
            except BenchError as exc:
                sys.stderr.write("bench-dataplane: removing pods: %s\n" % exc)


def parse_iperf(path, stdout, stderr):
    try:
        data = json.loads(stdout)
    except ValueError:
        raise BenchError("%s: iperf3 gave no JSON: %s %s" % (path, stdout[-500:], stderr[-500:]))
    if data.get("error"):
        raise BenchError("%s: iperf3: %s" % (path, data["error"]))
    received = data.get("end", {}).get("sum_received", {})
    bps, size = received.get("bits_per_second", 0), received.get("bytes", 0)
    if not bps or not size:
        raise BenchError("%s: iperf3 reports %s b/s, %s bytes received" % (path, bps, size))
    return {"bps": bps, "bytes": size}


def server_source(path, stdout):
    try:
        connected = json.loads(stdout)["start"]["connected"]
    except (ValueError, KeyError):
        raise BenchError("%s: the iperf3 server gave no connection record: %s"
                         % (path, stdout[-500:]))
    return connected[0]["remote_host"] if connected else None


def busy_fraction(since):
    """Share of the machine's CPU time that was busy since `since` (a /proc/stat sample)."""
    now = cpu_sample()
    total = now[0] - since[0]
    return (total - (now[1] - since[1])) / total if total else 0.0


def cpu_sample():
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:8]]
    return sum(fields), fields[3] + fields[4]


def measure(dp, rounds, seconds, count):
    """rounds x paths: {path: [(bps, rtt_ms), ...]}, order rotated per round."""
    samples = {path: [] for path in PATHS}
    for index in range(rounds):
        order = PATHS[index % len(PATHS):] + PATHS[:index % len(PATHS)]
        for path in order:
            bps = dp.iperf(path, seconds)
            rtt = dp.ping(path, count)
            samples[path].append((bps, rtt))
        sys.stderr.write("round %d/%d: %s\n" % (index + 1, rounds, "  ".join(
            "%s %.2f Gb/s %.3f ms" % (p, samples[p][-1][0] / 1e9, samples[p][-1][1])
            for p in PATHS)))
    return samples


def ratio(samples, num, den, col):
    """Median, min, max over rounds of each round's num/den (col 0: b/s, 1: RTT)."""
    values = [a[col] / b[col] for a, b in zip(samples[num], samples[den])]
    return statistics.median(values), min(values), max(values)


def spread(values):
    return min(values), statistics.median(values), max(values)


def report(samples, args, load, busy):
    print("\ndataplane: iperf3 TCP %s -> %s (pods; the node namespaces for \"nodes\"), %d rounds, "
          "-t %d, ping %d x 50 ms; load average %.2f before, %.2f after; machine %.0f %% busy "
          "during the runs"
          % (CLIENT, SERVER, args.rounds, args.seconds, args.count, load[0], load[1],
             100 * busy))
    print("  %-34s %21s %24s %7s %7s" % ("path", "Gb/s min/median/max", "RTT ms min/median/max",
                                         "Gb/s x", "RTT x"))
    for path in PATHS:
        gbps = spread([s[0] / 1e9 for s in samples[path]])
        rtt = spread([s[1] for s in samples[path]])
        tput, lat = ratio(samples, path, "routed", 0)[0], ratio(samples, path, "routed", 1)[0]
        print("  %-34s %6.2f %6.2f %6.2f   %6.3f %6.3f %6.3f   %6.2f %6.2f"
              % (LABELS[path], *gbps, *rtt, tput, lat))
    print("  (x: median of each round's ratio to the routed path in that round)")
    print("  ratios, median (min-max) of each round's:")
    for num, den in (("routed", "vxlan"), ("routed", "bare"), ("routed", "nodes"),
                     ("nat", "routed")):
        tput, lat = ratio(samples, num, den, 0), ratio(samples, num, den, 1)
        print("    %-14s throughput %.2f (%.2f-%.2f)   RTT %.2f (%.2f-%.2f)"
              % ("%s/%s" % (num, den), *tput, *lat))
    print("  2 shared cores, other work running: single runs are noisy (+-15 % or more); the "
          "ratios, measured side by side in each round, are the numbers to compare.")


def bench(args):
    lab = Lab(INVENTORY)
    dp = Dataplane(lab)
    lab.down()                                  # leftovers of a killed run
    try:
        lab.up()
        dp.converge()
        dp.make_pods()
        dp.setup_vxlan()
        dp.setup_bare()
        dp.setup_nat()
        load, cpu = os.getloadavg()[0], cpu_sample()
        samples = measure(dp, args.rounds, args.seconds, args.count)
        busy = busy_fraction(cpu)
        report(samples, args, (load, os.getloadavg()[0]), busy)
    finally:
        try:
            dp.close()
        finally:
            lab.down()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 -t per run")
    parser.add_argument("--count", type=int, default=100, help="pings per series")
    args = parser.parse_args()
    for name in ("rounds", "seconds", "count"):
        if getattr(args, name) < 1:
            parser.error("--%s=%r: must be at least 1" % (name, getattr(args, name)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # finally: still tears down
    try:
        bench(args)
    except BenchError as exc:
        sys.exit("bench-dataplane failed: %s" % exc)


if __name__ == "__main__":
    main()
