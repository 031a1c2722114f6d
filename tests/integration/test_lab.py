"""The lab itself, for real: two L2 networks joined by the lab router, three booted nodes.

Needs root. Brings up its own lab (name `kftlab`, networks 10.78.0.0/24 + 10.78.1.0/24) from a
temporary inventory and always tears it down.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

from lab import Lab, LabError  # noqa: E402
from lab.cleanup import mounts_under, scan_procs  # noqa: E402
from lab.network import list_netns  # noqa: E402
from labrunner import assert_run_ok, host_summary, run_playbook  # noqa: E402

NETS = [ipaddress.ip_network("10.78.0.0/24"), ipaddress.ip_network("10.78.1.0/24")]
HOSTS = {"a1": "10.78.0.11", "a2": "10.78.0.12", "b1": "10.78.1.11"}
PLAYBOOK = Path(__file__).parent / "playbooks" / "lab_ping.yml"


def write_inventory(root: Path, hosts: dict, nets, name="kftlab") -> Path:
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    lines = ["all:", "  children:", "    labtest:", "      hosts:"]
    for h, a in hosts.items():
        lines += [f"        {h}:", f"          ansible_host: {a}"]
    (root / "hosts.yml").write_text("\n".join(lines) + "\n")
    (root / "group_vars" / "all.yml").write_text(textwrap.dedent(f"""\
        ansible_user: root
        kubeflat_lab_name: {name}
        kubeflat_host_networks: {json.dumps([str(n) for n in nets])}
        """))
    return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    inv = write_inventory(tmp_path_factory.mktemp("inv"), HOSTS, NETS)
    lab = Lab(inv)
    try:
        lab.up(fresh=True)
        yield lab
    finally:
        lab.down()


def test_topology_from_inventory(lab):
    assert lab.hosts == HOSTS
    assert lab.ctl_netns == "kflab-kftlab-ctl"
    assert [str(n) for n in lab.networks] == [str(n) for n in NETS]


def test_each_host_answers_with_its_hostname(lab):
    for host in HOSTS:
        r = lab.ssh(host, "hostname", check=True, timeout=30)
        assert r.stdout.strip() == host


def test_node_address_mac_and_default_route(lab):
    r = lab.ssh("b1", ["ip", "-json", "addr", "show", "dev", "eth0"], check=True)
    link = json.loads(r.stdout)[0]
    assert link["address"] == "02:00:0a:4e:01:0b"          # derived from 10.78.1.11
    assert {(a["local"], a["prefixlen"]) for a in link["addr_info"]
            if a["family"] == "inet"} == {("10.78.1.11", 24)}
    routes = json.loads(lab.ssh("b1", "ip -json route show default", check=True).stdout)
    assert routes[0]["gateway"] == "10.78.1.1"


def test_up_is_idempotent(lab):
    info = lab.up()
    assert info["booted"] == [] and sorted(info["already_running"]) == sorted(HOSTS)


def test_ping_across_networks_through_router(lab):
    r = lab.ssh("a1", "ping -c 2 -W 2 10.78.1.11", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ttl=63" in r.stdout          # one routed hop: the lab router
    r = lab.ssh("a2", "ping -c 1 -W 2 10.78.0.11", timeout=30)
    assert r.returncode == 0 and "ttl=64" in r.stdout     # same L2 segment


def test_root_namespace_has_no_lab_routes_or_addresses():
    routes = json.loads(subprocess.run(["ip", "-json", "route"], capture_output=True,
                                       text=True, check=True).stdout)
    for rt in routes:
        if rt["dst"] == "default":
            continue
        dst = ipaddress.ip_network(rt["dst"], strict=False)
        assert not any(dst.overlaps(n) for n in NETS), rt
    addrs = json.loads(subprocess.run(["ip", "-json", "addr"], capture_output=True,
                                      text=True, check=True).stdout)
    for link in addrs:
        assert not link["ifname"].startswith("kf"), link["ifname"]
        for a in link.get("addr_info", []):
            if a["family"] == "inet":
                ip = ipaddress.ip_address(a["local"])
                assert not any(ip in n for n in NETS), a


def test_node_can_set_net_sysctls_and_run_cni_bridge(lab):
    """A pod made with the real CNI bridge plugin, inside a node (how other tests do it)."""
    conf = json.dumps({
        "cniVersion": "1.0.0", "name": "kflab", "type": "bridge", "bridge": "cni0",
        "isGateway": True, "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": "10.244.7.0/24", "dataDir": "/run/cni-ipam"},
    })
    script = f"""set -e
        sysctl -qw net.ipv4.ip_forward=1
        ip netns add pod1
        echo '{conf}' | CNI_COMMAND=ADD CNI_CONTAINERID=pod1 CNI_NETNS=/run/netns/pod1 \\
            CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge >/dev/null
        ip netns exec pod1 ping -c 1 -W 2 10.244.7.1 >/dev/null
        echo '{conf}' | CNI_COMMAND=DEL CNI_CONTAINERID=pod1 CNI_NETNS=/run/netns/pod1 \\
            CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge
        ip netns del pod1
        echo pod-ok"""
    r = lab.ssh("a2", script, timeout=60)
    assert r.returncode == 0 and "pod-ok" in r.stdout, r.stdout + r.stderr


def test_playbook_through_ansible_runner(lab):
    runner = run_playbook(lab, PLAYBOOK)
    summary = assert_run_ok(runner, changed=0)
    assert set(summary) == set(HOSTS)
    assert all(s["ok"] == 3 for s in summary.values()), summary
    runner = run_playbook(lab, PLAYBOOK, limit="b1", check=True)
    assert set(host_summary(runner)) == {"b1"}


def test_restart_keeps_disk_and_comes_back(lab):
    lab.ssh("a2", "echo kept > /root/disk-marker; echo gone > /run/tmpfs-marker", check=True)
    took = lab.restart("a2")
    assert took < 60
    r = lab.ssh("a2", "cat /root/disk-marker; ls /run/tmpfs-marker 2>/dev/null; "
                      "ps -o etimes= -p 1; hostname", check=True, timeout=30)
    lines = r.stdout.split()
    assert lines[0] == "kept" and "/run/tmpfs-marker" not in r.stdout
    assert int(lines[1]) < 60 and lines[2] == "a2"
    # address and MAC are unchanged, neighbours still reach it
    assert lab.ssh("b1", "ping -c 1 -W 2 10.78.0.12", timeout=30).returncode == 0


def test_same_lab_name_from_another_inventory_is_refused(lab, tmp_path):
    inv = write_inventory(tmp_path, {"z1": "10.78.0.99"}, NETS)      # also named kftlab
    with pytest.raises(LabError, match="already up from another inventory"):
        Lab(inv).up()
    assert sorted(lab.running_nodes()) == sorted(HOSTS)


def test_bad_inventories_are_refused(tmp_path):
    inv = write_inventory(tmp_path / "gw", {"x1": "10.78.0.1"}, NETS[:1], name="kftbad")
    with pytest.raises(LabError, match="first address"):
        Lab(inv)
    inv = write_inventory(tmp_path / "out", {"x1": "10.99.0.5"}, NETS[:1], name="kftbad")
    with pytest.raises(LabError, match="none of kubeflat_host_networks"):
        Lab(inv)


def test_zz_down_leaves_nothing(lab):
    lab.down()
    assert not [ns for ns in list_netns() if ns.startswith(lab.ns_prefix)]
    assert mounts_under(lab.disk_dir) == []
    assert "kftlab" not in Path("/proc/mounts").read_text()
    procs = scan_procs()
    assert not [p for p in procs if any("kflab-kftlab-" in a for a in p.cmdline)]
    assert not [cg for cg in lab.cgroups() if cg.exists()]
    assert not lab.disk_dir.exists()
