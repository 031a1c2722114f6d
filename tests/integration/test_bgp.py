"""Pod CIDRs over BGP across racks, with real routing daemons (lab "bgp",
tests/integration/inventories/bgp).

Two racks with their own subnets (cp1, w1 | w2, w3), an outside host db1 on a third subnet,
rack routers r1/r2 and an edge router edge1 running real FRR (built by the lab from the
inventory), every node running real BIRD 2 configured by kubeflat (role bgp_bird). Pods are
made with the real CNI plugins by playbooks/verify.yml. Assertions are on what the daemons
and kernels report (`vtysh ... json`, `birdc`, `ip -json route`) and on the source address a
server saw.
"""
from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest

from lab import Lab  # noqa: E402
from labrunner import assert_run_ok, output, run_playbook  # noqa: E402

INVENTORY = Path(__file__).parent / "inventories" / "bgp"
PLAYBOOK = Path(__file__).parent / "flat_network.yml"
RACKS = {"rack1": {"cp1": ("10.83.1.11", "10.244.1.0/24"), "w1": ("10.83.1.12", "10.244.2.0/24")},
         "rack2": {"w2": ("10.83.2.11", "10.244.3.0/24"), "w3": ("10.83.2.12", "10.244.4.0/24")}}
NODES = {n: v for rack in RACKS.values() for n, v in rack.items()}
ROUTERS = {"r1": "rack1", "r2": "rack2"}
FABRIC = ipaddress.ip_network("10.83.0.0/24")
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
BIRD_CONF = "/etc/bird/bird.conf"


def sh(lab, host, cmd, check=True):
    return lab.ssh(host, cmd, check=check).stdout


def bgp_pod_routes(lab, host):
    """{pod CIDR: gateway} of the routes FRR installed in the router's kernel."""
    table = json.loads(sh(lab, host, "ip -json route show proto bgp"))
    return {r["dst"]: r.get("gateway") for r in table
            if ipaddress.ip_network(r["dst"]).subnet_of(POD_CIDR)}


def frr_peers(lab, host):
    data = json.loads(sh(lab, host, "vtysh -c 'show bgp ipv4 unicast summary json'"))
    return {addr: p["state"] for addr, p in data["peers"].items()}


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError("not within %ss: %s" % (timeout, what))


def probe(lab, src, dst_addr, port=17001):
    """From the verify test pod on ``src`` to ``dst_addr``: (ok, address the server saw)."""
    cmd = ("ip netns exec kubeflat-verify python3 -c 'import socket,sys; "
           "c=socket.create_connection((sys.argv[1],%d),timeout=2); "
           "print(c.makefile().readline().strip())' %s" % (port, dst_addr))
    r = lab.ssh(src, cmd)
    return r.returncode == 0, r.stdout.strip()


def pod_address(lab, node):
    data = json.loads(sh(lab, node, "ip netns exec kubeflat-verify ip -json -4 addr show eth0"))
    return data[0]["addr_info"][0]["local"]


def run(lab, **kw):
    return run_playbook(lab, str(PLAYBOOK), timeout=600, **kw)


@pytest.fixture(scope="module")
def lab():
    lab = Lab(INVENTORY)
    try:
        lab.up(fresh=True)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def converged(lab):
    """preflight + network (static + BIRD) + routes + verify (the matrix), asserted clean."""
    runner = run(lab)
    assert_run_ok(runner)
    text = output(runner)
    assert "every cell ok, no NAT either way" in text, text[-3000:]
    # the outside host on a node-less segment is named, not refused
    assert "db1: on a segment without nodes" in text
    return runner


def test_sessions_established_with_real_daemons(lab, converged):
    for router, rack in ROUTERS.items():
        peers = wait_for(lambda: all(s == "Established" for s in frr_peers(lab, router).values()),
                         30, "%s: every session Established" % router) is not None
        assert peers
        state = frr_peers(lab, router)
        assert {a for a, _ in RACKS[rack].values()} <= set(state), state
    for node in NODES:
        out = sh(lab, node, "birdc show protocols")
        assert "Established" in out, out
        assert "kernel" not in out.lower().split("name", 1)[1], out     # no kernel protocol


def test_each_rack_router_learns_exactly_the_other_racks_pod_cidrs(lab, converged):
    for router, rack in ROUTERS.items():
        routes = bgp_pod_routes(lab, router)
        own = {cidr: addr for addr, cidr in RACKS[rack].values()}
        others = {cidr for r, nodes in RACKS.items() if r != rack for _, cidr in nodes.values()}
        from_fabric = {c for c, gw in routes.items() if ipaddress.ip_address(gw) in FABRIC}
        from_nodes = {c: gw for c, gw in routes.items() if ipaddress.ip_address(gw) not in FABRIC}
        assert from_fabric == others, routes
        assert from_nodes == own, routes
    edge = bgp_pod_routes(lab, "edge1")
    assert set(edge) == {cidr for _, cidr in NODES.values()}, edge


def test_nodes_route_directly_within_the_rack_and_bird_writes_no_kernel_route(lab, converged):
    for rack, nodes in RACKS.items():
        for node in nodes:
            table = json.loads(sh(lab, node, "ip -json route show table main"))
            kubeflat = {r["dst"]: r.get("gateway") for r in table if r.get("protocol") == "kubeflat"}
            assert kubeflat == {c: a for n, (a, c) in nodes.items() if n != node}, table
            assert not [r for r in table if r.get("protocol") in ("bird", "bgp", "12")], table
            default = [r for r in table if r["dst"] == "default"]
            assert default and default[0]["gateway"].endswith(".2"), table


SERVER = ("systemd-run --unit={unit} --collect --quiet -- ip netns exec kubeflat-verify "
          "python3 -c 'import socket;s=socket.socket();"
          "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
          "s.bind((\"0.0.0.0\",17001));s.listen(8)\n"
          "while True:\n c,a=s.accept();c.sendall((a[0]+\"\\n\").encode());c.close()'")


def start_server(lab, node, unit):
    """A TCP server in the node's verify pod answering with the address it saw."""
    sh(lab, node, SERVER.format(unit=unit))
    wait_for(lambda: lab.ssh(node, "ip netns exec kubeflat-verify ss -Hntl | grep -q :17001")
             .returncode == 0, 10, "server in pod@%s" % node)


def test_cross_rack_pod_to_pod_and_outside_host_without_nat(lab, converged):
    w3_pod = pod_address(lab, "w3")
    start_server(lab, "w3", "kf-bgp-peer")
    try:
        ok, seen = probe(lab, "cp1", w3_pod)
        assert ok and seen == pod_address(lab, "cp1"), (ok, seen)
        # the outside host on the third subnet: the pod's server sees db1's own address
        cmd = ("python3 -c 'import socket; c=socket.create_connection((\"%s\",17001),"
               "timeout=2); print(c.makefile().readline().strip())'" % w3_pod)
        r = lab.ssh("db1", cmd)
        assert r.returncode == 0 and r.stdout.strip() == "10.83.3.11", r.stdout + r.stderr
        # routed, not tunnelled: db1 -> edge1 -> r2 -> w3 -> pod and back, 3 routers each way
        ttl = sh(lab, "db1", "ping -c1 -W2 %s" % w3_pod)
        assert "ttl=61" in ttl, ttl
    finally:
        sh(lab, "w3", "systemctl stop kf-bgp-peer", check=False)


def test_second_run_changes_nothing_and_check_diff_shows_the_bird_change(lab, converged):
    assert_run_ok(run(lab), changed=0)
    before = {n: sh(lab, n, "cat %s; ip -json route" % BIRD_CONF) for n in NODES}
    runner = run(lab, check=True, diff=True, tags="network",
                 extravars={"kubeflat_bgp_hold_time": 12, "kubeflat_bgp_keepalive_time": 4})
    assert runner.rc == 0, output(runner)[-3000:]
    text = output(runner)
    assert "-  hold time 9;" in text and "+  hold time 12;" in text, text[-3000:]
    assert {n: sh(lab, n, "cat %s; ip -json route" % BIRD_CONF) for n in NODES} == before


def test_bird_stopped_withdraws_the_prefix_and_comes_back(lab, converged):
    w3_cidr = NODES["w3"][1]
    w3_pod = pod_address(lab, "w3")
    start_server(lab, "w3", "kf-bgp-peer2")
    try:
        wait_for(lambda: probe(lab, "cp1", w3_pod)[0], 10, "pod@cp1 -> pod@w3 before")
        sh(lab, "w3", "systemctl stop bird")
        took = wait_for(lambda: w3_cidr not in bgp_pod_routes(lab, "r1")
                        and w3_cidr not in bgp_pod_routes(lab, "r2"), 9,
                        "w3's prefix withdrawn within the hold time (9 s)")
        assert not probe(lab, "cp1", w3_pod)[0], "pod@w3 still reachable across racks"
        sh(lab, "w3", "systemctl start bird")
        wait_for(lambda: w3_cidr in bgp_pod_routes(lab, "r1"), 30, "w3's prefix back on r1")
        wait_for(lambda: probe(lab, "cp1", w3_pod)[0], 10, "pod@cp1 -> pod@w3 again")
        assert took < 9
    finally:
        sh(lab, "w3", "systemctl start bird; systemctl stop kf-bgp-peer2", check=False)


def test_router_restart_brings_sessions_and_routes_back_without_kubeflat(lab, converged):
    lab.restart("r1")
    wait_for(lambda: all(s == "Established" for s in frr_peers(lab, "r1").values()), 60,
             "r1: every session Established after its restart")
    wait_for(lambda: set(bgp_pod_routes(lab, "r1")) == {c for _, c in NODES.values()}, 30,
             "r1 relearned every pod CIDR")
    wait_for(lambda: set(bgp_pod_routes(lab, "edge1")) == {c for _, c in NODES.values()}, 30,
             "edge1 relearned rack1's pod CIDRs")
