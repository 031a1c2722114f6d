"""remove-node and reset, for real, in the lab (lab name "rmrst", inventories/remove).

Booted nodes over real SSH: cp1, w1, w2 (static CNI mode, distribution none) and db1 outside
the cluster. At the start every host's file list under /etc and /var/lib/kubeflat*, its unit
files, route table, links and network namespaces are recorded, after the test put a foreign
file under /etc/cni/net.d and a foreign route there. Then the network, routes and verify stages
run (verify makes a real test pod with the CNI plugins on every node). remove-node (first with
the node's link down: a dead node) and reset must leave exactly what was recorded, the foreign
file and route included; a node removed while dead must be gone from every other host's routes.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab import Lab  # noqa: E402
from labrunner import assert_run_ok, host_summary, output, run_playbook  # noqa: E402

INVENTORY = Path(__file__).parent / "inventories" / "remove"
NODES = {"cp1": ("10.86.0.11", "10.244.0.0/24"), "w1": ("10.86.0.21", "10.244.1.0/24"),
         "w2": ("10.86.0.22", "10.244.2.0/24")}
HOSTS = ("cp1", "w1", "w2", "db1")
BATCH = "/etc/kubeflat/pod-routes.batch"
FOREIGN_FILE = "/etc/cni/net.d/99-foreign.conflist"
FOREIGN_TEXT = '{"cniVersion": "1.0.0", "name": "foreign", "plugins": [{"type": "loopback"}]}\n'
FOREIGN_ROUTE = "192.0.2.0/24"


def sh(lab, host, cmd, check=True):
    return lab.ssh(host, cmd, check=check).stdout


def route_table(lab, host):
    table = json.loads(sh(lab, host, "ip -json route show table main"))
    return sorted((r["dst"], r.get("gateway"), r.get("dev"), r.get("protocol", "boot"),
                   r.get("scope", "global")) for r in table)


def kubeflat_routes(lab, host):
    return {dst: gw for dst, gw, _dev, proto, _s in route_table(lab, host) if proto == "kubeflat"}


def state(lab, host):
    """What a person would check on the host: files, units, routes, links, namespaces."""
    files = sh(lab, host, "find /etc $(ls -d /var/lib/kubeflat* 2>/dev/null) -xdev "
                          "-printf '%y %p\\n' | sort").splitlines()
    units = sh(lab, host, "systemctl list-unit-files --no-legend --no-pager | awk '{print $1, $2}'"
               ).splitlines()
    links = sorted(link["ifname"] for link in json.loads(sh(lab, host, "ip -json link show")))
    netns = sh(lab, host, "ip netns list").split()
    return {"files": files, "units": units, "routes": route_table(lab, host), "links": links,
            "netns": netns}


def assert_as_before(lab, host, before):
    now = state(lab, host)
    for key in before:
        gone = sorted(set(before[key]) - set(now[key]), key=str)
        added = sorted(set(now[key]) - set(before[key]), key=str)
        assert not gone and not added, "%s %s: gone %s, left behind %s" % (host, key, gone, added)
    assert sh(lab, host, "ls /var/lib/cni/networks/kubeflat 2>/dev/null || true").strip() == ""


def run(lab, playbook, **kw):
    return run_playbook(lab, playbook, timeout=600, **kw)


@pytest.fixture(scope="module")
def lab():
    with Lab(INVENTORY) as lab:     # up, and down again even when a test fails
        yield lab


@pytest.fixture(scope="module")
def before(lab):
    """Foreign file and route first, then the record, then kubeflat's stages."""
    for host in HOSTS:
        sh(lab, host, "mkdir -p /etc/cni/net.d && printf '%%s' '%s' > %s" % (
            FOREIGN_TEXT.replace("'", "'\\''"), FOREIGN_FILE))
        sh(lab, host, "ip route replace %s via 10.86.0.1 proto static" % FOREIGN_ROUTE)
    record = {host: state(lab, host) for host in HOSTS}
    runner = run(lab, "site.yml", tags="network,routes,verify")
    assert_run_ok(runner)
    assert "12 of 12 cells ok" in output(runner)
    # kubeflat really put things there, so the checks below can fail.
    assert kubeflat_routes(lab, "db1") == {c: a for a, c in NODES.values()}
    assert sh(lab, "w1", "ip netns list").split()[0] == "kubeflat-verify"
    assert "cni0" in state(lab, "w1")["links"]
    return record


def test_an_unknown_node_is_refused_before_anything_changes(lab, before):
    runner = run(lab, "playbooks/remove_node.yml", extravars={"node": "w9"})
    assert runner.rc != 0
    assert "node='w9': not a node of this inventory (nodes: cp1, w1, w2)" in output(runner)
    assert kubeflat_routes(lab, "db1") == {c: a for a, c in NODES.values()}
    runner = run(lab, "playbooks/remove_node.yml")
    assert runner.rc != 0 and "no node given" in output(runner)


def test_remove_a_dead_node_then_clean_it_when_it_is_back(lab, before):
    w2 = lab.nodes["w2"]
    lab._close_ssh({str(w2.addr)})
    subprocess.run(["ip", "-n", lab.ctl_netns, "link", "set", w2.veth, "down"], check=True)
    try:
        runner = run(lab, "playbooks/remove_node.yml", extravars={"node": "w2"})
        assert runner.rc != 0, "a run that could not reach the removed node must end failed"
        summary = host_summary(runner)
        assert summary["w2"]["dark"] >= 1, summary
        assert all(summary[h]["failures"] == 0 and summary[h]["dark"] == 0
                   for h in ("cp1", "w1", "db1")), summary
        # Everywhere else the dead node's pod CIDR is gone, and only that.
        assert kubeflat_routes(lab, "db1") == {"10.244.0.0/24": "10.86.0.11",
                                               "10.244.1.0/24": "10.86.0.21"}
        assert kubeflat_routes(lab, "cp1") == {"10.244.1.0/24": "10.86.0.21"}
        assert kubeflat_routes(lab, "w1") == {"10.244.0.0/24": "10.86.0.11"}
        assert "10.244.2.0/24" not in sh(lab, "db1", f"cat {BATCH}")
        text = output(runner)
        assert "w2 (being removed) was unreachable" in text
    finally:
        subprocess.run(["ip", "-n", lab.ctl_netns, "link", "set", w2.veth, "up"], check=True)
    # Back: the same command now cleans the node itself, to exactly what it was before.
    runner = run(lab, "playbooks/remove_node.yml", extravars={"node": "w2"})
    assert_run_ok(runner)
    assert_as_before(lab, "w2", before["w2"])
    assert sh(lab, "w2", f"cat {FOREIGN_FILE}") == FOREIGN_TEXT
    assert kubeflat_routes(lab, "w1") == {"10.244.0.0/24": "10.86.0.11"}
    assert "kubeflat-verify" in sh(lab, "w1", "ip netns list")   # the others' pods stay


def test_reset_without_a_yes_changes_nothing(lab, before):
    runner = run(lab, "playbooks/reset.yml", extravars={"kubeflat_reset_confirm": "no"})
    assert runner.rc != 0
    assert "kubeflat_reset_confirm='no': reset needs 'yes'" in output(runner)
    assert kubeflat_routes(lab, "db1") == {"10.244.0.0/24": "10.86.0.11",
                                           "10.244.1.0/24": "10.86.0.21"}


def test_reset_leaves_only_what_was_there_before(lab, before):
    runner = run(lab, "playbooks/reset.yml", extravars={"kubeflat_reset_confirm": "yes"})
    assert_run_ok(runner)
    for host in HOSTS:
        assert_as_before(lab, host, before[host])
        assert sh(lab, host, f"cat {FOREIGN_FILE}") == FOREIGN_TEXT
        table = route_table(lab, host)
        assert any(r[0] == "default" for r in table), host
        assert any(r[0] == "10.86.0.0/24" and r[3] == "kernel" for r in table), host
        assert any(r[0] == FOREIGN_ROUTE and r[3] == "static" for r in table), host
    # Nothing left to do: a second reset changes nothing anywhere.
    assert_run_ok(run(lab, "playbooks/reset.yml", extravars={"kubeflat_reset_confirm": "yes"}),
                  changed=0)
