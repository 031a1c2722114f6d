"""The flat pod network, for real, in the lab (lab name "flat", tests/integration/inventories/flat).

Booted nodes over real SSH: cp1, w1, w2 (static CNI mode), db1 and lb1 outside the cluster on the
same L2 network, far1 on a second network behind the lab router. Pods are made with the real
CNI plugins (bridge/host-local/portmap/loopback from Debian's containernetworking-plugins);
routes are real kernel routes; peers report the source address they saw. Playbooks run through
labrunner (ansible-runner from inside the lab's controller namespace); assertions are on
runner stats per host and on what the hosts' kernels report (`ip -json route`).

One lab for the whole module; every test that changes a host by hand undoes it in `finally`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

from lab import Lab  # noqa: E402
from labrunner import assert_run_ok, host_summary, output, run_playbook  # noqa: E402

INVENTORY = Path(__file__).parent / "inventories" / "flat"
PLAYBOOK = Path(__file__).parent / "flat_network.yml"
NODES = {"cp1": ("10.78.0.11", "10.244.0.0/24"), "w1": ("10.78.0.21", "10.244.1.0/24"),
         "w2": ("10.78.0.22", "10.244.2.0/24")}
OUTSIDE = ("db1", "lb1")
MANAGED = OUTSIDE + tuple(NODES)
BATCH = "/etc/kubeflat/pod-routes.batch"
# Everything `--tags routes` may change: routes, their boot file/protocol name, the boot unit.
ROUTE_TASKS = {
    "outside_routes : Apply routes owned by kubeflat (protocol 201), their boot file and boot unit",
    "outside_routes : Re-apply the kubeflat pod routes from the boot file",
}


# --------------------------------------------------------------------------- helpers
def sh(lab, host, cmd, check=True):
    return lab.ssh(host, cmd, check=check).stdout


def routes(lab, host):
    """{dest: (gateway, protocol)} of the host's main table, from `ip -json route`."""
    table = json.loads(sh(lab, host, "ip -json route show table main"))
    return {r["dst"]: (r.get("gateway"), r.get("protocol", "boot")) for r in table}


def kubeflat_routes(lab, host):
    return {d: gw for d, (gw, proto) in routes(lab, host).items() if proto == "kubeflat"}


def snapshot(lab):
    """Route table and persistence files of every managed host."""
    snap = {}
    for host in MANAGED:
        files = sh(lab, host, f"cat {BATCH} /etc/iproute2/rt_protos.d/kubeflat.conf "
                              "/etc/systemd/system/kubeflat-pod-routes.service 2>/dev/null",
                   check=False)
        snap[host] = {"routes": routes(lab, host), "files": files}
    return snap


def expected_outside():
    return {cidr: addr for addr, cidr in NODES.values()}


def changed_tasks(runner):
    """"role : task" names of every task that reported a change."""
    names = set()
    for ev in runner.events:
        data = ev.get("event_data") or {}
        if ev.get("event") in ("runner_on_ok", "runner_item_on_ok") and \
                (data.get("res") or {}).get("changed"):
            names.add("%s : %s" % (data.get("role"), data.get("task")) if data.get("role")
                      else data.get("task"))
    return names


def inventory_copy(tmp_path, edit):
    """A copy of the flat inventory (same lab name, so the same running nodes), edited."""
    dest = tmp_path / "inv"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(INVENTORY, dest)
    hosts = yaml.safe_load((dest / "hosts.yml").read_text())
    edit(hosts["all"]["children"])
    (dest / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return dest


def run(lab, **kw):
    return run_playbook(lab, str(PLAYBOOK), timeout=600, **kw)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lab():
    with Lab(INVENTORY) as lab:     # up, and down again even when a test fails
        yield lab


@pytest.fixture(scope="module")
def converged(lab):
    """First converge of preflight + network + routes + verify, asserted clean."""
    runner = run(lab)
    assert_run_ok(runner)
    return runner


def routes_converged(lab):
    if any(kubeflat_routes(lab, h) != expected_outside() for h in OUTSIDE):
        return False
    return all(kubeflat_routes(lab, n) == {c: a for a, c in NODES.values() if c != cidr}
               for n, (_, cidr) in NODES.items())


@pytest.fixture
def restore_routes(lab, converged):
    """Re-converge the routes if a test left them broken (on purpose or by failing)."""
    yield
    if not routes_converged(lab):
        assert_run_ok(run(lab, tags="routes"))


# --------------------------------------------------------------------------- tests
def test_converge_routes_everywhere_and_idempotent(lab, converged):
    for host in OUTSIDE:
        assert kubeflat_routes(lab, host) == expected_outside(), host
    for node, (addr, cidr) in NODES.items():
        peers = {c: a for a, c in NODES.values() if c != cidr}
        assert kubeflat_routes(lab, node) == peers, node
        assert sh(lab, node, "cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
        assert "10.78.0.0/24" in routes(lab, node) and "default" in routes(lab, node)
    assert "18 of 18 cells ok" in output(converged)
    again = run(lab)
    assert_run_ok(again, changed=0)
    assert "18 of 18 cells ok" in output(again)
    # Tag runs that check different hosts (network: the nodes; routes: every host) one after
    # the other are no-ops too: the diagram draws the hosts a run did not check as last seen.
    for tags in ("network", "routes", "network"):
        assert_run_ok(run(lab, tags=tags), changed=0)


def test_pod_and_outside_host_see_each_other_without_nat(lab, converged):
    """Independent of verify.yml: a server in w2's pod and one on db1 report the peer address."""
    pod_ip = json.loads(sh(lab, "w2", "ip -n kubeflat-verify -json addr show dev eth0"))[0][
        "addr_info"][0]["local"]
    assert pod_ip.startswith("10.244.2.")
    server = ("import socket;s=socket.socket();s.setsockopt(1,2,1);s.bind(('0.0.0.0',17011));"
              "s.listen(1);c,a=s.accept();c.sendall(a[0].encode());c.close()")
    client = ("import socket,sys;c=socket.create_connection((sys.argv[1],17011),timeout=5);"
              "print(c.recv(64).decode())")
    retry = "for i in $(seq 20); do {} && exit 0; sleep 0.3; done; exit 1"
    try:
        # outside host -> pod: the pod's server sees db1's own address.
        sh(lab, "w2", "systemd-run --unit=kf-test-srv --collect ip netns exec kubeflat-verify "
                      f"python3 -c \"{server}\"")
        seen = sh(lab, "db1", retry.format(f"python3 -c \"{client}\" {pod_ip}")).strip()
        assert seen == "10.78.0.31", f"the pod saw {seen}, not db1's own address"
        # pod -> outside host: db1's server sees the pod's own address.
        sh(lab, "db1", f"systemd-run --unit=kf-test-srv --collect python3 -c \"{server}\"")
        seen = sh(lab, "w2", retry.format(
            f"ip netns exec kubeflat-verify python3 -c \"{client}\" 10.78.0.31")).strip()
        assert seen == pod_ip, f"db1 saw {seen}, not the pod's own address {pod_ip}"
    finally:
        for host in ("w2", "db1"):
            sh(lab, host, "systemctl stop kf-test-srv 2>/dev/null; true", check=False)


def test_missing_route_fails_verify_check_shows_it_routes_tag_repairs_only_routes(
        lab, converged, restore_routes):
    """One broken route on an outside host (db1) and one on a node (w1), then:
    verify fails naming the cell; --check --diff reports the fix and changes nothing;
    --tags routes alone repairs exactly those hosts, changing nothing but routes."""
    sh(lab, "db1", "ip route del 10.244.2.0/24 proto kubeflat")
    sh(lab, "w1", f"ip route del 10.244.0.0/24 proto kubeflat; rm -f {BATCH}")

    runner = run(lab, tags="verify")
    assert runner.rc != 0
    text = output(runner)
    assert "db1       | .    | .    | ok      | ok     | FAIL" in text
    assert "FAILED db1 -> pod@w2" in text and "FAILED pod@w1 -> pod@cp1" in text
    assert all(s["changed"] == 0 for s in host_summary(runner).values())

    before = snapshot(lab)
    runner = run(lab, tags="routes", check=True, diff=True)
    summary = assert_run_ok(runner)
    assert summary["db1"]["changed"] >= 1 and summary["w1"]["changed"] >= 1
    assert all(summary.get(h, {}).get("changed", 0) == 0 for h in ("lb1", "cp1", "w2", "far1")), summary
    assert "+10.244.2.0/24 via 10.78.0.22" in output(runner)
    assert snapshot(lab) == before
    assert "10.244.2.0/24" not in kubeflat_routes(lab, "db1")

    runner = run(lab, tags="routes")
    summary = assert_run_ok(runner)
    assert summary["db1"]["changed"] >= 1 and summary["w1"]["changed"] >= 1
    assert all(summary.get(h, {}).get("changed", 0) == 0 for h in ("lb1", "cp1", "w2", "far1")), summary
    assert changed_tasks(runner) <= ROUTE_TASKS, changed_tasks(runner)
    ran = {(ev.get("event_data") or {}).get("role") for ev in runner.events
           if ev.get("event") == "runner_on_ok"}
    assert ran <= {"kubeflat", "outside_routes", None}, ran
    assert kubeflat_routes(lab, "db1") == expected_outside()
    assert kubeflat_routes(lab, "w1")["10.244.0.0/24"] == "10.78.0.11"
    assert "10.244.0.0/24 via 10.78.0.11" in sh(lab, "w1", f"cat {BATCH}")


def test_node_leaving_inventory_loses_exactly_its_routes(lab, converged, tmp_path,
                                                          restore_routes):
    inv = inventory_copy(tmp_path, lambda c: c["k8s_cluster"]["children"]["kube_node"][
        "hosts"].pop("w2"))
    sh(lab, "db1", "ip route add 10.99.0.0/24 via 10.78.0.21")
    try:
        runner = run(lab, tags="routes", inventory=str(inv))
        assert_run_ok(runner)
        for host in OUTSIDE:
            want = {c: a for c, a in expected_outside().items() if c != "10.244.2.0/24"}
            assert kubeflat_routes(lab, host) == want, host
            assert "10.244.2.0/24" not in sh(lab, host, f"cat {BATCH}")
        assert kubeflat_routes(lab, "cp1") == {"10.244.1.0/24": "10.78.0.21"}
        assert kubeflat_routes(lab, "w1") == {"10.244.0.0/24": "10.78.0.11"}
        # The hand-made (foreign) route survives, with its own protocol.
        assert routes(lab, "db1")["10.99.0.0/24"] == ("10.78.0.21", "boot")
        # w2 left the inventory: nobody touched it.
        assert kubeflat_routes(lab, "w2") == {"10.244.0.0/24": "10.78.0.11",
                                              "10.244.1.0/24": "10.78.0.21"}
    finally:
        sh(lab, "db1", "ip route del 10.99.0.0/24 via 10.78.0.21", check=False)


def _add_far1(children):
    """far1 lives on 10.78.1.0/24: no node address is on a subnet connected to it."""
    children["k8s_outside"]["hosts"]["far1"] = children.pop("lab_spare")["hosts"]["far1"]


def _move_w2(children):
    children["k8s_cluster"]["children"]["kube_node"]["hosts"]["w2"][
        "kubeflat_node_pod_cidr"] = "10.244.9.0/24"


def _overlap(children):
    hosts = children["k8s_cluster"]["children"]
    hosts["kube_control_plane"]["hosts"]["cp1"]["kubeflat_node_pod_cidr"] = "10.244.5.0/24"
    hosts["kube_node"]["hosts"]["w1"]["kubeflat_node_pod_cidr"] = "10.244.5.0/24"


REFUSALS = [
    # (inventory edit, host, prefix, reason)
    (_add_far1, "far1", "10.244.0.0/24",
     "gateway 10.78.0.11 is not on a subnet connected to this host"),
    (_move_w2, "lb1", "10.244.9.0/24",
     "overlaps network 10.244.9.0/24 connected to this host on eth0"),
    (None, "db1", "10.244.1.0/24",
     "a foreign route to the same prefix exists (10.244.1.0/24 via 10.78.0.22, protocol boot)"),
]


def test_refusals_and_bad_inventory_change_nothing_on_any_host(lab, converged, tmp_path,
                                                               restore_routes):
    """Each refusal names host, prefix and reason, and no host changes (not even hosts with a
    pending change of their own: w1 misses a route the run would otherwise restore)."""
    sh(lab, "w1", "ip route del 10.244.2.0/24 proto kubeflat")
    # lb1: an address inside w2's would-be pod CIDR; db1: a foreign route to w1's pod CIDR.
    sh(lab, "lb1", "ip addr add 10.244.9.5/24 dev eth0")
    sh(lab, "db1", "ip route del 10.244.1.0/24 proto kubeflat; "
                   "ip route add 10.244.1.0/24 via 10.78.0.22")
    try:
        for i, (edit, host, prefix, reason) in enumerate(REFUSALS):
            inv = inventory_copy(tmp_path / str(i), edit) if edit else None
            before = snapshot(lab)
            runner = run(lab, tags="routes", **({"inventory": str(inv)} if inv else {}))
            text = output(runner)
            assert runner.rc != 0
            assert f"kubeflat refuses route on host {host}, prefix {prefix}: {reason}" in text, \
                text[-3000:]
            assert host_summary(runner)[host]["failures"] >= 1
            assert all(s["changed"] == 0 for s in host_summary(runner).values())
            assert snapshot(lab) == before, (host, reason)
        assert routes(lab, "db1")["10.244.1.0/24"] == ("10.78.0.22", "boot")

        # A bad inventory (two nodes declaring one pod CIDR): the preflight refuses it before
        # any play touches a host, whatever the stages.
        inv = inventory_copy(tmp_path / "bad", _overlap)
        before = snapshot(lab)
        runner = run(lab, inventory=str(inv))
        assert runner.rc != 0
        assert "overlaps the pod CIDR 10.244.5.0/24 of node cp1" in output(runner)
        assert any(s["failures"] for s in host_summary(runner).values())
        assert all(s["changed"] == 0 for s in host_summary(runner).values())
        assert snapshot(lab) == before
    finally:
        sh(lab, "lb1", "ip addr del 10.244.9.5/24 dev eth0", check=False)
        sh(lab, "db1", "ip route del 10.244.1.0/24 via 10.78.0.22 proto boot", check=False)


def _move_w1(children):
    """w1 gets another pod CIDR; the others are pinned to theirs (allocation would shift w2)."""
    k8s = children["k8s_cluster"]["children"]
    k8s["kube_control_plane"]["hosts"]["cp1"]["kubeflat_node_pod_cidr"] = "10.244.0.0/24"
    k8s["kube_node"]["hosts"]["w1"]["kubeflat_node_pod_cidr"] = "10.244.7.0/24"
    k8s["kube_node"]["hosts"]["w2"]["kubeflat_node_pod_cidr"] = "10.244.2.0/24"


def test_a_dead_node_does_not_hold_the_reachable_hosts_hostage(lab, converged, tmp_path,
                                                               restore_routes):
    """w2's link goes down (a real dead node). A --tags routes run that moves w1's pod CIDR
    converges every reachable host, keeps their routes towards w2 (still in the inventory),
    reports w2 unreachable and ends failed, so nobody takes it for a clean run."""
    w2 = lab.nodes["w2"]
    lab._close_ssh({str(w2.addr)})
    subprocess.run(["ip", "-n", lab.ctl_netns, "link", "set", w2.veth, "down"], check=True)
    try:
        runner = run(lab, tags="routes", inventory=str(inventory_copy(tmp_path, _move_w1)))
        assert runner.rc != 0
        summary = host_summary(runner)
        assert summary["w2"]["dark"] >= 1, summary
        assert all(summary[h]["failures"] == 0 and summary[h]["dark"] == 0
                   for h in ("cp1", "w1", "db1", "lb1")), summary
        for host in OUTSIDE:
            assert kubeflat_routes(lab, host) == {"10.244.0.0/24": "10.78.0.11",
                                                  "10.244.7.0/24": "10.78.0.21",
                                                  "10.244.2.0/24": "10.78.0.22"}, host
            assert "10.244.7.0/24 via 10.78.0.21" in sh(lab, host, f"cat {BATCH}")
        assert kubeflat_routes(lab, "cp1") == {"10.244.7.0/24": "10.78.0.21",
                                               "10.244.2.0/24": "10.78.0.22"}
        text = output(runner)
        assert "w2" in text and "UNREACHABLE" in text
    finally:
        subprocess.run(["ip", "-n", lab.ctl_netns, "link", "set", w2.veth, "up"], check=True)
    # Back to the inventory as it is: w1's old pod CIDR returns everywhere, w2 included.
    assert_run_ok(run(lab, tags="routes"))
    assert routes_converged(lab)


def test_routes_come_back_after_reboot_without_ansible(lab, converged):
    lab.restart("db1")
    assert kubeflat_routes(lab, "db1") == expected_outside()
    assert sh(lab, "db1", "systemctl is-active kubeflat-pod-routes").strip() == "active"
    lab.restart("w1")
    assert kubeflat_routes(lab, "w1") == {"10.244.0.0/24": "10.78.0.11",
                                          "10.244.2.0/24": "10.78.0.22"}
    # The test pod is gone with the reboot; verify makes it again and everything is green.
    runner = run(lab, tags="verify")
    assert_run_ok(runner)
    assert "18 of 18 cells ok" in output(runner)
