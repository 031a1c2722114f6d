"""The lab's topology, read from an Ansible inventory: host networks, and per host its address,
network, namespace, veth and machine name (nothing hard-coded).

``ansible-inventory --list`` is cached under /run/kubeflat-lab keyed on the inventory files'
mtimes and sizes, so a second ``up``/``status`` costs no Ansible start."""
from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .common import NAME_RE, REPO, RUN_ROOT, VENV_BIN, LabError, run, short_hash
from .routers import load_routers

@dataclass
class Node:
    name: str
    addr: ipaddress.IPv4Address
    net: ipaddress.IPv4Network
    net_index: int
    netns: str
    veth: str          # the peer in the controller namespace
    machine: str       # nspawn machine name
    # lab routers: (bridge index, interface address, controller-side veth) per extra interface
    extra: list = field(default_factory=list)
    router: dict | None = None        # {"asn": ...} for lab_routers hosts
    gw: ipaddress.IPv4Address | None = None   # default gateway override (None: see gateway)

    @property
    def gateway(self) -> ipaddress.IPv4Address | None:
        if self.router is not None:
            return None                   # routers route only what FRR learned
        return self.gw or next(self.net.hosts())

    @property
    def mac(self) -> str:
        return "02:00:" + ":".join(f"{b:02x}" for b in self.addr.packed)

    @property
    def peer_mac(self) -> str:
        return "02:01:" + ":".join(f"{b:02x}" for b in self.addr.packed)


@dataclass
class Topology:
    name: str
    networks: list[ipaddress.IPv4Network]
    nodes: dict[str, Node] = field(default_factory=dict)
    groups: dict = field(default_factory=dict)      # group -> hosts (children flattened)
    hostvars: dict = field(default_factory=dict)


def _inventory_fingerprint(inv: Path) -> str:
    h = hashlib.sha256(str(inv).encode())
    if inv.is_file():
        paths = [inv]
    else:      # what ansible-inventory reads (not e.g. a big rendered/ tree beside it)
        paths = sorted(p for p in inv.iterdir() if p.is_file())
        for sub in ("group_vars", "host_vars"):
            if (inv / sub).is_dir():
                paths += sorted(p for p in (inv / sub).rglob("*") if p.is_file())
    for p in paths:
        st = p.stat()
        h.update(f"{p}:{st.st_mtime_ns}:{st.st_size}\n".encode())
    return h.hexdigest()


def _inventory_hostvars(inv: Path) -> tuple[list[str], dict, dict]:
    cache = RUN_ROOT / "inventory-cache" / f"{short_hash(str(inv), 16)}.json"
    fp = _inventory_fingerprint(inv)
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(cache.read_text())
        if data["fingerprint"] == fp:
            return data["hosts"], data["hostvars"], data["groups"]
    exe = VENV_BIN / "ansible-inventory"
    if not exe.exists():
        exe = Path(shutil.which("ansible-inventory") or exe)
    if not exe.exists():
        raise LabError(f"{exe} not found: run `make setup` first")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"))
    p = run([str(exe), "-i", str(inv), "--list"], check=False, env=env, timeout=120)
    if p.returncode != 0:
        raise LabError(f"ansible-inventory -i {inv} --list failed:\n{p.stderr.strip()}")
    data = json.loads(p.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hosts: list[str] = []

    def walk(group: str, seen: set) -> None:
        if group in seen:
            return
        seen.add(group)
        g = data.get(group, {})
        for h in g.get("hosts", []):
            if h not in hosts:
                hosts.append(h)
        for c in g.get("children", []):
            walk(c, seen)

    walk("all", set())
    for h in hostvars:
        if h not in hosts:
            hosts.append(h)

    def members(group: str, seen: set) -> list[str]:
        if group in seen:
            return []
        seen.add(group)
        g = data.get(group, {})
        out = list(g.get("hosts", []))
        for c in g.get("children", []):
            out += [h for h in members(c, seen) if h not in out]
        return out

    groups = {g: members(g, set()) for g in data if g != "_meta"}
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"fingerprint": fp, "hosts": hosts, "hostvars": hostvars,
                                     "groups": groups}))
    return hosts, hostvars, groups


def load_topology(inv: Path) -> Topology:
    hosts, hostvars, groups = _inventory_hostvars(inv)
    if not hosts:
        raise LabError(f"inventory {inv} has no hosts")
    first = hostvars.get(hosts[0], {})
    raw_name = str(first.get("kubeflat_lab_name") or (inv.name if inv.is_dir() else inv.stem))
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw_name)
    if not NAME_RE.match(name):
        raise LabError(f"lab name {raw_name!r} must be 1-24 characters of [A-Za-z0-9_] "
                       "(set kubeflat_lab_name in group_vars/all)")
    nets_raw = first.get("kubeflat_host_networks")
    if not nets_raw or not isinstance(nets_raw, list):
        raise LabError("kubeflat_host_networks (list of IPv4 CIDRs) must be set for all hosts "
                       f"of {inv} (group_vars/all)")
    networks: list[ipaddress.IPv4Network] = []
    for n in nets_raw:
        try:
            net = ipaddress.IPv4Network(str(n), strict=True)
        except ValueError as e:
            raise LabError(f"kubeflat_host_networks entry {n!r}: {e}") from None
        if net.prefixlen > 30:
            raise LabError(f"host network {net} is too small for a lab (needs /30 or larger)")
        for other in networks:
            if net.overlaps(other):
                raise LabError(f"host networks {net} and {other} overlap")
        networks.append(net)
    topo = Topology(name=name, networks=networks, groups=groups, hostvars=hostvars)
    seen_addr: dict[ipaddress.IPv4Address, str] = {}
    for h in hosts:
        hv = hostvars.get(h, {})
        if h == "ctl":
            raise LabError("a host may not be called 'ctl' (reserved for the lab controller)")
        if "/" in h or len(h) > 64:
            raise LabError(f"host name {h!r} cannot name a lab node")
        a = hv.get("ansible_host", h)
        try:
            addr = ipaddress.IPv4Address(str(a))
        except ValueError:
            raise LabError(f"host {h}: ansible_host {a!r} is not an IPv4 address "
                           "(every lab host needs one)") from None
        idx = next((i for i, n in enumerate(networks) if addr in n), None)
        if idx is None:
            raise LabError(f"host {h}: {addr} is in none of kubeflat_host_networks "
                           f"({', '.join(map(str, networks))})")
        net = networks[idx]
        if addr == next(net.hosts()):
            raise LabError(f"host {h}: {addr} is the first address of {net}, which the lab "
                           "router takes; give the host another address")
        if addr in (net.network_address, net.broadcast_address):
            raise LabError(f"host {h}: {addr} is not a usable host address of {net}")
        if addr in seen_addr:
            raise LabError(f"hosts {seen_addr[addr]} and {h} share the address {addr}")
        seen_addr[addr] = h
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", h)
        veth = f"kf-{safe}" if len(safe) <= 12 and re.fullmatch(r"[A-Za-z0-9_-]+", safe) \
            else f"kfh{short_hash(h, 10)}"
        machine = re.sub(r"[^A-Za-z0-9-]", "-", h).strip("-")[:60] or f"n{short_hash(h)}"
        topo.nodes[h] = Node(name=h, addr=addr, net=net, net_index=idx,
                             netns=f"kflab-{name}-{safe}", veth=veth, machine=machine)
    load_routers(topo, seen_addr)
    return topo
