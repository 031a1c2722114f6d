"""The lab's network, all of it inside network namespaces (nothing in the root namespace gets
an address, route or interface): the controller/router namespace with one bridge per host
network, and per node a namespace joined to its bridge(s) by veth pairs."""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from .common import run
from .topology import Node


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def netns_ino(ns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return None


def bridge_name(idx: int) -> str:
    """The bridge of host network number ``idx`` (in the controller namespace)."""
    return f"kfbr{idx}"


def netns_exec(ns: str, argv) -> list[str]:
    return ["ip", "netns", "exec", ns, *map(str, argv)]


def _links(ns: str) -> set[str]:
    return {l["ifname"] for l in json.loads(run(["ip", "-n", ns, "-j", "link"]).stdout)}


def ensure_controller(ns: str, networks) -> None:
    """The controller/router namespace: ip_forward on, one bridge per host network holding
    that network's first address (idempotent)."""
    if ns not in list_netns():
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
    links = _links(ns)
    cmds = []
    for i, net in enumerate(networks):
        br = bridge_name(i)
        if br in links:
            continue
        gw = next(net.hosts())
        mac = "02:fe:" + ":".join(f"{b:02x}" for b in gw.packed)
        cmds += [f"link add {br} address {mac} type bridge stp_state 0 forward_delay 0",
                 f"link set {br} alias kubeflat-{net}",
                 f"addr add {gw}/{net.prefixlen} dev {br}",
                 f"link set {br} up"]
    if cmds:
        run(["ip", "-n", ns, "-b", "-"], input="\n".join(cmds) + "\n")


def _configure_inside(n: Node) -> None:
    batch = ["link set lo up", f"addr add {n.addr}/{n.net.prefixlen} dev eth0",
             "link set eth0 up"]
    for i, (_, iface, _) in enumerate(n.extra, 1):
        batch += [f"addr add {iface} dev eth{i}", f"link set eth{i} up"]
    if n.gateway is not None:
        batch.append(f"route add default via {n.gateway} dev eth0")
    run(["ip", "-n", n.netns, "-b", "-"], input="\n".join(batch) + "\n")
    if n.router is not None:       # a router forwards; no redirects, no rp_filter
        run(["ip", "netns", "exec", n.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
             "net.ipv4.conf.all.send_redirects=0",
             "net.ipv4.conf.default.send_redirects=0"])


def create_node_links(ctl_ns: str, nodes: list[Node]) -> None:
    """Per node: its namespace, ``eth0`` (MAC derived from its IP) on its network's bridge
    (plus ``ethN`` per extra router interface), its address and default route."""
    if not nodes:
        return
    run(["ip", "-b", "-"], input="".join(f"netns add {n.netns}\n" for n in nodes))
    cmds = []
    for n in nodes:
        cmds += [f"link add {n.veth} address {n.peer_mac} type veth peer name eth0 "
                 f"address {n.mac} netns {n.netns}",
                 f"link set {n.veth} alias {n.name}",
                 f"link set {n.veth} master {bridge_name(n.net_index)} up"]
        for i, (idx, iface, xveth) in enumerate(n.extra, 1):
            mac = ":".join(f"{b:02x}" for b in iface.ip.packed)
            cmds += [f"link add {xveth} address 02:01:{mac} type veth peer name eth{i} "
                     f"address 02:00:{mac} netns {n.netns}",
                     f"link set {xveth} alias {n.name}-eth{i}",
                     f"link set {xveth} master {bridge_name(idx)} up"]
    run(["ip", "-n", ctl_ns, "-b", "-"], input="\n".join(cmds) + "\n")
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(_configure_inside, nodes))


def delete_netns(names) -> None:
    if names:
        run(["ip", "-b", "-"], input="".join(f"netns del {ns}\n" for ns in names), check=False)


def delete_node_links(ctl_ns: str, nodes: list[Node], timeout: float = 10) -> None:
    """Delete the nodes' namespaces and wait (bounded) until their veths are gone from the
    controller namespace (deletion is asynchronous); then remove any left ourselves."""
    have = set(list_netns())
    delete_netns([n.netns for n in nodes if n.netns in have])
    if ctl_ns not in list_netns():
        return
    deadline = time.monotonic() + timeout
    while True:
        links = _links(ctl_ns)
        left = [n for n in nodes
                if n.veth in links or any(x[2] in links for x in n.extra)]
        if not left:
            return
        if time.monotonic() > deadline:
            # The namespace is held by something; remove the veths ourselves.
            for n in left:
                for v in [n.veth] + [x[2] for x in n.extra]:
                    if v in links:
                        run(["ip", "-n", ctl_ns, "link", "del", v], check=False)
            return
        time.sleep(0.05)


def remove_root_links() -> None:
    """Defensive: the lab never creates links in the root namespace, but a crashed older run
    might have; remove any of ours by name."""
    for l in json.loads(run(["ip", "-j", "link"]).stdout):
        if l["ifname"].startswith(("kf-", "kfbr", "kfh", "kfx")):
            run(["ip", "link", "del", l["ifname"]], check=False)
