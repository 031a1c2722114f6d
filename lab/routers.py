"""Lab rack routers (the lab-only inventory group ``lab_routers``): their extra interfaces, ASN
and BGP neighbours, the default gateway they are for the other hosts on their segments, and
the FRR configuration the lab writes for them (never kubeflat's roles)."""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .common import LabError, short_hash

if TYPE_CHECKING:
    from .topology import Node, Topology

ROUTER_GROUP = "lab_routers"


def load_routers(topo: Topology, seen_addr: dict) -> None:
    """Rack routers (group lab_routers): extra interfaces, ASN, and the default gateway of the
    other hosts on their segments."""
    routers = [h for h in topo.groups.get(ROUTER_GROUP, []) if h in topo.nodes]
    for h in routers:
        n, hv = topo.nodes[h], topo.hostvars.get(h, {})
        for grp in ("k8s_cluster", "k8s_outside"):
            if h in topo.groups.get(grp, []):
                raise LabError(f"host {h}: a lab router cannot also be in {grp}")
        asn = hv.get("lab_router_asn")
        if isinstance(asn, bool) or not isinstance(asn, int) or not 1 <= asn <= 4294967294:
            raise LabError(f"host {h}: lab_router_asn {asn!r} must be an AS number "
                           "(lab routers speak eBGP)")
        n.router = {"asn": asn}
        used = {n.net_index}
        for raw in hv.get("lab_router_interfaces") or []:
            try:
                iface = ipaddress.IPv4Interface(str(raw))
            except ValueError:
                raise LabError(f"host {h}: lab_router_interfaces entry {raw!r} is not "
                               "addr/prefix") from None
            idx = next((i for i, net in enumerate(topo.networks) if iface.network == net), None)
            if idx is None:
                raise LabError(f"host {h}: lab_router_interfaces entry {raw} is not on one of "
                               f"kubeflat_host_networks ({', '.join(map(str, topo.networks))})")
            if idx in used:
                raise LabError(f"host {h}: two interfaces on {iface.network}")
            if iface.ip == next(iface.network.hosts()) or iface.ip in seen_addr:
                raise LabError(f"host {h}: {iface.ip} is taken (the controller holds the "
                               "first address of every network)" if iface.ip not in seen_addr
                               else f"host {h}: {iface.ip} is also {seen_addr[iface.ip]}")
            seen_addr[iface.ip] = h
            used.add(idx)
            n.extra.append((idx, iface, f"kfx{short_hash(h + str(iface.ip), 10)}"))
    for h, n in topo.nodes.items():
        if n.router is not None:
            continue
        for r in routers:
            addr = router_address(topo.nodes[r], n.net)
            if addr is not None:
                n.gw = addr
                break


def router_address(router: Node, net: ipaddress.IPv4Network) -> ipaddress.IPv4Address | None:
    """The router's own address on ``net`` (None when it has no interface there)."""
    if router.net == net:
        return router.addr
    for _, iface, _ in router.extra:
        if iface.network == net:
            return iface.ip
    return None


def router_neighbors(topo: Topology, router: str) -> tuple[list[str], list[str]]:
    """(node neighbors, router neighbors) of a lab router: every k8s_cluster host on one of
    its segments, and every other router's address on a shared segment (sorted)."""
    me = topo.nodes[router]
    nets = [me.net] + [iface.network for _, iface, _ in me.extra]
    cluster = set(topo.groups.get("k8s_cluster", []))
    nodes, routers = [], []
    for h, n in sorted(topo.nodes.items()):
        if h == router:
            continue
        if n.router is not None:
            for net in nets:
                addr = router_address(n, net)
                if addr is not None:
                    routers.append(str(addr))
        elif h in cluster and n.net in nets:
            nodes.append(str(n.addr))
    key = ipaddress.IPv4Address
    return sorted(nodes, key=key), sorted(routers, key=key)


def frr_config(name: str, router_id: str, asn: int, nodes: list[str], routers: list[str],
               pod_cidr: str, node_prefix: int, networks: list[str], keepalive: int = 3,
               hold: int = 9, password: str | None = None) -> str:
    """FRR config of a lab rack router: eBGP with the rack's nodes (only /node_prefix subnets
    of the pod CIDR accepted, nothing sent) and with the other routers (everything), plus the
    lab's host networks it is connected to."""
    lines = [
        f"! kubeflat lab rack router {name}: written by lab/routers.py from the inventory",
        "frr defaults datacenter",
        f"hostname {name}",
        "log syslog informational",
        "service integrated-vtysh-config",
        "!",
        f"ip prefix-list KUBEFLAT-PODS seq 10 permit {pod_cidr} ge {node_prefix} le {node_prefix}",
    ]
    lines += [f"ip prefix-list LAB-NETS seq {10 * (i + 1)} permit {net}"
              for i, net in enumerate(networks)]
    lines += [
        "!",
        "route-map FROM-NODES permit 10",
        " match ip address prefix-list KUBEFLAT-PODS",
        "exit",
        "route-map TO-NODES deny 10",
        "exit",
        "route-map FABRIC permit 10",
        "exit",
        "route-map CONNECTED permit 10",
        " match ip address prefix-list LAB-NETS",
        "exit",
        "!",
        f"router bgp {asn}",
        f" bgp router-id {router_id}",
        " no bgp default ipv4-unicast",
        f" timers bgp {keepalive} {hold}",
    ]
    for group, peers in (("NODES", nodes), ("FABRIC", routers)):
        if not peers:
            continue
        lines += [f" neighbor {group} peer-group", f" neighbor {group} remote-as external",
                  f" neighbor {group} timers connect 5"]
        if password:
            lines.append(f" neighbor {group} password {password}")
        lines += [f" neighbor {p} peer-group {group}" for p in peers]
    lines += [" !", " address-family ipv4 unicast", "  redistribute connected route-map CONNECTED"]
    if nodes:
        lines += ["  neighbor NODES activate", "  neighbor NODES route-map FROM-NODES in",
                  "  neighbor NODES route-map TO-NODES out"]
    if routers:
        lines += ["  neighbor FABRIC activate", "  neighbor FABRIC route-map FABRIC in",
                  "  neighbor FABRIC route-map FABRIC out"]
    lines += [" exit-address-family", "exit", "!"]
    return "\n".join(lines) + "\n"


def router_config(topo: Topology, host: str) -> str:
    """The FRR config the lab gives router ``host`` (from the inventory)."""
    n = topo.nodes[host]
    nodes, routers = router_neighbors(topo, host)
    hv = topo.hostvars.get(host, {})
    return frr_config(
        host, str(n.addr), n.router["asn"], nodes, routers,
        str(hv.get("kubeflat_pod_cidr") or "10.244.0.0/16"),
        int(hv.get("kubeflat_node_pod_prefix") or 24), [str(x) for x in topo.networks],
        int(hv.get("kubeflat_bgp_keepalive_time") or 3),
        int(hv.get("kubeflat_bgp_hold_time") or 9), hv.get("kubeflat_bgp_password") or None)


def write_router_config(n: Node, merged: Path, config: str) -> None:
    """Put ``config`` into the router node's /etc/frr (owned by frr), turn bgpd on and FRR's
    unit on at boot, in the node's merged overlay."""
    etc = merged / "etc/frr"
    ids = {}
    for line in (merged / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == "frr":
            ids = {"uid": int(f[2]), "gid": int(f[3])}
    if not ids or not (etc / "daemons").exists():
        raise LabError(f"{n.name}: FRR is not in the lab rootfs (PACKAGES needs frr); "
                       "rebuild it: python -m lab rootfs --force")
    daemons = (etc / "daemons").read_text()
    (etc / "daemons").write_text(re.sub(r"(?m)^bgpd=no$", "bgpd=yes", daemons))
    conf = etc / "frr.conf"
    conf.write_text(config)
    os.chown(conf, ids["uid"], ids["gid"])
    conf.chmod(0o640)
    wants = merged / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "frr.service"
    if not link.is_symlink():
        link.symlink_to("/lib/systemd/system/frr.service")
