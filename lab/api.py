#!/usr/bin/env python3
"""kubeflat lab: one booted systemd-nspawn node per inventory host, on a flat routed network.

Topology (derived from the inventory, nothing hard-coded):
  * one controller/router network namespace per lab (``kflab-<lab>-ctl``) holding one Linux
    bridge per ``kubeflat_host_networks`` entry, with that network's first address on it and
    ip_forward=1 (inside that namespace only). Ansible runs inside this namespace.
  * per host: a network namespace (``kflab-<lab>-<host>``), a veth pair (``eth0`` in the node
    with a MAC derived from its IP, peer on its network's bridge), ansible_host/prefix, default
    route via the network's first address; a systemd-nspawn container booted on an overlayfs
    over a cached debootstrap rootfs, with sshd accepting the lab's key for root.
  * nothing in the root network namespace gets an address, route or interface.
  * hosts of the lab-only group ``lab_routers`` are rack routers running FRR (configured by the
    lab from the inventory, never by kubeflat's roles): ``eth0`` at ``ansible_host`` plus one
    interface per ``lab_router_interfaces`` entry (``addr/prefix`` on another host network),
    eBGP (ASN ``lab_router_asn``) with every k8s_cluster host and every other router on their
    segments, no default route. A router on a segment is the default gateway of the other
    hosts there (otherwise the controller namespace's first address is, as before).

CLI:  kubeflat_lab.py {up,down,status,exec,shell,play,restart,rootfs} --inventory DIR ...
API:  from lab.kubeflat_lab import Lab;  with Lab("inventories/lab") as lab: lab.ssh("w1", "ip r")

Python 3.11 stdlib only. Must run as root.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
CACHE_ROOT = Path("/var/cache/kubeflat")          # cached rootfs + debootstrap .deb cache
DISK_ROOT = Path("/var/lib/kubeflat-lab")         # per-node overlay upper/work/merged ("disks")
RUN_ROOT = Path("/run/kubeflat-lab")              # runtime state: locks, pids, wrapper, known_hosts
CP_ROOT = Path("/tmp/kubeflat-cp")                # ansible.cfg control_path_dir; one subdir per lab

PACKAGES = [
    "systemd-sysv", "dbus", "python3", "python3-apt", "openssh-server", "iproute2",
    "iputils-ping", "sudo", "containernetworking-plugins", "containerd", "runc", "iptables",
    "nftables", "netcat-openbsd", "procps", "kmod", "ca-certificates",
    # BGP: BIRD 2 for nodes (role bgp_bird), FRR for the lab's rack routers (lab_routers).
    "bird2", "frr",
]
ROOTFS_RECIPE = "4"   # bump when customize_rootfs() changes: it is part of the cache key

# Units that only slow a container's boot down or spam its console.
MASK_UNITS = [
    "console-getty.service", "container-getty@.service", "getty@.service",
    "serial-getty@.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "dpkg-db-backup.timer",
    # Boot work a lab node has no use for (each unit costs CPU x 50 nodes at boot).
    "systemd-journal-flush.service", "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service", "systemd-sysusers.service", "dev-hugepages.mount",
    "systemd-remount-fs.service", "systemd-tmpfiles-clean.timer", "ldconfig.service",
]
# Installed but not started at boot (50 idle containerd daemons cost ~1.5 GB); roles that need
# them enable/start them like on any host.
DISABLE_UNITS = ["containerd.service", "bird.service", "frr.service"]

SSHD_DROPIN = """\
# kubeflat lab node: root logs in with the lab key only.
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
MaxStartups 100:30:200
MaxSessions 64
"""

BOOT_TIMEOUT = float(os.environ.get("KUBEFLAT_LAB_BOOT_TIMEOUT", "90"))
STOP_TIMEOUT = float(os.environ.get("KUBEFLAT_LAB_STOP_TIMEOUT", "10"))
INOTIFY_INSTANCES = 8192
INOTIFY_FILE = Path("/proc/sys/fs/inotify/max_user_instances")
NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,24}$")


class LabError(RuntimeError):
    """A lab operation failed; the message says why and what to do."""


def log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def run(argv, *, check=True, input=None, timeout=120, capture=True, env=None):
    p = subprocess.run(argv, input=input, text=True, timeout=timeout, env=env,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and p.returncode != 0:
        raise LabError(f"command failed ({p.returncode}): {shlex.join(map(str, argv))}\n"
                       f"{(p.stderr or '').strip()}")
    return p


@contextlib.contextmanager
def flock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def short_hash(s: str, n: int = 8) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:n]


# --------------------------------------------------------------------------- rootfs

def _mirror_and_suite() -> tuple[str, str]:
    suite = "bookworm"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                suite = line.split("=", 1)[1].strip().strip('"') or suite
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.exists():
        for stanza in re.split(r"\n\s*\n", src.read_text()):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith("#"):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            suites = fields.get("suites", "").split()
            if suite in suites and fields.get("uris"):
                return fields["uris"].split()[0], suite
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                return parts[1], suite
    return "http://deb.debian.org/debian", suite


def base_key() -> str:
    """Key of the raw debootstrap tree: suite + package list."""
    _, suite = _mirror_and_suite()
    return short_hash(json.dumps([sorted(PACKAGES), suite]), 12)


def rootfs_key() -> str:
    """Key of the node rootfs: the base plus everything customize_rootfs() does."""
    blob = json.dumps([base_key(), ROOTFS_RECIPE, SSHD_DROPIN, MASK_UNITS, DISABLE_UNITS])
    return short_hash(blob, 12)


def rootfs_path() -> Path:
    return CACHE_ROOT / f"rootfs-{rootfs_key()}"


def customize_rootfs(root: Path) -> None:
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/sshd_config.d/kubeflat.conf").write_text(SSHD_DROPIN)
    for f in (root / "etc/ssh").glob("ssh_host_*"):
        f.unlink()                       # per-node host keys are generated at first boot
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    os.chmod(root / "root/.ssh", 0o700)
    (root / "root/.ssh/authorized_keys").touch()   # bind-mount target
    with contextlib.suppress(FileNotFoundError):
        (root / "etc/hostname").unlink()
    (root / "etc/machine-id").write_text("")
    (root / "etc/fstab").write_text("# kubeflat lab node: no fstab\n")
    # No DNS in the lab: fail fast instead of timing out on the build host's resolver.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("# kubeflat lab node: no DNS server\noptions timeout:1 attempts:1\n")
    run(["systemctl", f"--root={root}", "mask", *MASK_UNITS])
    run(["systemctl", f"--root={root}", "disable", *DISABLE_UNITS], check=False)
    run(["systemctl", f"--root={root}", "set-default", "multi-user.target"])
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _debootstrap(base: Path) -> None:
    mirror, suite = _mirror_and_suite()
    tmp = base.with_name(base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    debs = CACHE_ROOT / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log(f"debootstrap {suite} from {mirror} into {base} (~1 min, cached afterwards)")
    p = run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             f"--cache-dir={debs}", suite, str(tmp), mirror], check=False, timeout=1800)
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        with contextlib.suppress(OSError):
            tail += "\n" + "\n".join((tmp / "debootstrap/debootstrap.log")
                                     .read_text().splitlines()[-15:])
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(f"debootstrap failed:\n{tail}")
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    base.with_name(base.name + ".ok").write_text(json.dumps(
        {"packages": PACKAGES, "suite": suite, "mirror": mirror,
         "seconds": round(time.monotonic() - t0, 1)}) + "\n")


def ensure_rootfs(force: bool = False) -> Path:
    """Build (once) the shared read-only node rootfs: a debootstrap base cached by package
    list, copied and customized into rootfs-<key> (key covers the customization too)."""
    path = rootfs_path()
    ok = path.with_name(path.name + ".ok")
    if ok.exists() and not force:
        return path
    with flock(CACHE_ROOT / "rootfs.lock"):
        if ok.exists() and not force:
            return path
        if shutil.which("debootstrap") is None:
            raise LabError("debootstrap is not installed: run `make setup` (scripts/setup.sh)")
        if path.exists():
            busy = [ln for ln in Path("/proc/mounts").read_text().splitlines()
                    if f"lowerdir={path}" in ln]
            if busy:
                raise LabError(f"{path} is in use by running lab nodes; run `down` first")
        t0 = time.monotonic()
        base = CACHE_ROOT / f"base-{base_key()}"
        if force or not base.with_name(base.name + ".ok").exists():
            _debootstrap(base)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        run(["cp", "-a", "--reflink=auto", str(base), str(tmp)], timeout=600)
        customize_rootfs(tmp)
        ok.unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        ok.write_text(json.dumps({"base": base.name, "recipe": ROOTFS_RECIPE,
                                  "built": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        log(f"node rootfs {path} ready in {time.monotonic() - t0:.1f}s")
        _prune_rootfs(keep={path.name, base.name})
    return path


def _prune_rootfs(keep: set[str]) -> None:
    """Remove rootfs/base trees of older recipes that no mounted overlay uses."""
    mounts = Path("/proc/mounts").read_text()
    for d in CACHE_ROOT.iterdir():
        name = d.name.removesuffix(".ok")
        if not name.startswith(("rootfs-", "base-")) or name in keep or name.endswith(".tmp"):
            continue
        if f"lowerdir={CACHE_ROOT / name}" in mounts:
            continue
        log(f"removing unused {CACHE_ROOT / name}")
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
        else:
            d.unlink(missing_ok=True)


# --------------------------------------------------------------------------- inventory

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
    _load_routers(topo, seen_addr)
    return topo


ROUTER_GROUP = "lab_routers"


def _load_routers(topo: Topology, seen_addr: dict) -> None:
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
        f"! kubeflat lab rack router {name}: written by lab/kubeflat_lab.py from the inventory",
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


# --------------------------------------------------------------------------- processes

def _netns_ino(ns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return None


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


@dataclass
class Proc:
    pid: int
    ppid: int
    state: str
    netns: int | None
    cmdline: list[str]


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def scan_procs() -> list[Proc]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = _read(f"/proc/{d}/stat")
            rest = stat[stat.rindex(b")") + 2:].split(None, 2)
            cmd = [c.decode(errors="replace") for c in _read(f"/proc/{d}/cmdline").split(b"\0")
                   if c]
            try:
                ino = os.stat(f"/proc/{d}/ns/net").st_ino
            except OSError:
                ino = None
            out.append(Proc(int(d), int(rest[1]), rest[0].decode(), ino, cmd))
        except (OSError, ValueError, IndexError):
            continue
    return out


def pid_alive(pid: int) -> bool:
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        return st[st.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def _ns_pid1(pid: int) -> bool:
    """True if pid is the init (pid 1) of a nested PID namespace (a container's systemd)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                f = line.split()
                return len(f) > 2 and f[-1] == "1"
    return False


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            st = Path(f"/proc/{pid}/stat").read_text()
            pid = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            break
    return pids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_pids(pids, sig) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_dead(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if pid_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if pid_alive(p)]
    return left


def cgroup_roots() -> list[Path]:
    """Mount points of the hierarchies systemd uses: name=systemd (v1) and the unified one."""
    roots = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype, _, opts = (post.split() + ["", "", ""])[:3]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in opts.split(",")):
            roots.append(Path(pre.split()[4]))
    return roots


def rmdir_tree(path: Path) -> None:
    """Remove an (empty of processes) cgroup tree, deepest first."""
    if not path.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(path), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


_libc = None


def umount(path: str, lazy: bool = False) -> bool:
    """umount2(2) without spawning umount(8) (50 nodes = 50 processes otherwise)."""
    global _libc
    if _libc is None:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc.umount2(os.fsencode(path), 2 if lazy else 0) == 0


def mounts_under(prefix: Path) -> list[str]:
    res = []
    for line in Path("/proc/mounts").read_text().splitlines():
        mp = line.split()[1].encode().decode("unicode_escape")
        if mp == str(prefix) or mp.startswith(str(prefix) + "/"):
            res.append(mp)
    return res


# --------------------------------------------------------------------------- the lab

PROBE = r"""
import json, socket, sys, threading, time
deadline = time.monotonic() + float(sys.argv[1]); t0 = time.monotonic(); ready = {}
def probe(a):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((a, 22), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    ready[a] = round(time.monotonic() - t0, 2); return
        except OSError:
            pass
        time.sleep(0.1)
ts = [threading.Thread(target=probe, args=(a,), daemon=True) for a in sys.argv[2:]]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(ready)); sys.exit(0 if len(ready) == len(sys.argv) - 2 else 1)
"""


class Lab:
    """A lab built from an Ansible inventory directory. See the module docstring."""

    def __init__(self, inventory_dir, *, boot_timeout: float = BOOT_TIMEOUT, quiet=False,
                 _name: str | None = None):
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, mounts, systemd-nspawn)")
        if _name is not None:          # Lab.by_name(): no inventory, only able to sweep
            self.inventory = None
            self.topo = Topology(name=_name, networks=[])
        else:
            self.inventory = Path(inventory_dir).resolve()
            if not self.inventory.exists():
                raise LabError(f"inventory {inventory_dir} does not exist")
            self.topo = load_topology(self.inventory)
        self.name = self.topo.name
        self.nodes = self.topo.nodes
        self.hosts = {h: str(n.addr) for h, n in self.nodes.items()}
        self.networks = self.topo.networks
        self.ctl_netns = f"kflab-{self.name}-ctl"
        self.ns_prefix = f"kflab-{self.name}-"
        self.key_dir = REPO / ".lab" / self.name
        self.key = self.key_dir / "id_ed25519"
        self.disk_dir = DISK_ROOT / self.name
        self.state_dir = RUN_ROOT / self.name
        self.cp_dir = CP_ROOT / self.name
        self.known_hosts = self.state_dir / "known_hosts"
        self.boot_timeout = boot_timeout
        self.quiet = quiet
        self.cli = False
        self._popen: dict[str, subprocess.Popen] = {}
        self.last_up: dict = {}

    @classmethod
    def by_name(cls, name: str, quiet=False) -> "Lab":
        """A lab known only by name: enough for down() (sweep by naming prefix)."""
        if not NAME_RE.match(name):
            raise LabError(f"bad lab name {name!r}")
        return cls(None, quiet=quiet, _name=name)

    @staticmethod
    def existing_names() -> list[str]:
        """Names of every lab with something left on this machine."""
        names = {ns.split("-", 2)[1] for ns in list_netns()
                 if ns.startswith("kflab-") and ns.count("-") >= 2}
        for root in (DISK_ROOT, RUN_ROOT):
            with contextlib.suppress(OSError):
                names |= {d.name for d in root.iterdir() if d.is_dir() and NAME_RE.match(d.name)}
        marker = "--network-namespace-path=/run/netns/kflab-"
        for p in scan_procs():
            for a in p.cmdline:
                if a.startswith(marker) and a.count("-") >= 4:
                    names.add(a[len(marker):].split("-", 1)[0])
        return sorted(n for n in names if NAME_RE.match(n))

    # ------------------------------------------------------------ helpers
    def _log(self, msg):
        if not self.quiet:
            log(msg)

    def _summary(self, msg):
        if not self.cli:               # the CLI prints its own summary on stdout
            self._log(msg)

    def _debug(self, msg):
        if os.environ.get("KUBEFLAT_LAB_DEBUG"):
            log(f"debug: {msg}")

    def _lock(self):
        return flock(RUN_ROOT / f"{self.name}.lock")

    def bridge(self, idx: int) -> str:
        return f"kfbr{idx}"

    def node_dir(self, host: str) -> Path:
        return self.disk_dir / self.nodes[host].netns[len(self.ns_prefix):]

    def ctl_argv(self, argv) -> list[str]:
        return ["ip", "netns", "exec", self.ctl_netns, *map(str, argv)]

    def ansible_env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.key),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_REMOTE_USER": "root",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.cp_dir),
            "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={self.known_hosts} "
                                       "-o IdentitiesOnly=yes",
            "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            "KUBEFLAT_LAB_NAME": self.name,
            "KUBEFLAT_LAB_CTL_NETNS": self.ctl_netns,
        })
        return env

    def playbook_binary(self) -> str:
        """Write (and return the path of) an ansible-playbook wrapper that runs in the lab."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        forced = {
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.key),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.cp_dir),
            "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={self.known_hosts} "
                                       "-o IdentitiesOnly=yes",
            "KUBEFLAT_LAB_NAME": self.name,
            "KUBEFLAT_LAB_CTL_NETNS": self.ctl_netns,
        }
        defaults = {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
            "ANSIBLE_REMOTE_USER": "root",
        }
        lines = ["#!/bin/sh", f"# kubeflat lab {self.name}: ansible-playbook inside "
                 f"{self.ctl_netns} (generated by lab/kubeflat_lab.py)"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in forced.items()]
        lines += [f': "${{{k}:={shlex.quote(v)}}}"; export {k}' for k, v in defaults.items()]
        lines += [f'export PATH={shlex.quote(str(VENV_BIN))}:"$PATH"',
                  f"exec ip netns exec {shlex.quote(self.ctl_netns)} "
                  f"{shlex.quote(str(VENV_BIN / 'ansible-playbook'))} \"$@\""]
        path = self.state_dir / "ansible-playbook"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o755)
        tmp.rename(path)
        return str(path)

    def _addr(self, host: str) -> str:
        if host in self.hosts:
            return self.hosts[host]
        if host in self.hosts.values():
            return host
        raise LabError(f"unknown lab host {host!r} (known: {', '.join(self.hosts)})")

    def ssh_argv(self, host: str, cmd=None, *, tty=False) -> list[str]:
        addr = self._addr(host)
        argv = ["ssh", "-i", str(self.key), "-l", "root",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self.cp_dir}/lab-%C",
                "-o", "ControlPersist=120"]
        if tty:
            argv.append("-t")
        argv.append(addr)
        if cmd is not None:
            argv += ["--", cmd if isinstance(cmd, str) else shlex.join(map(str, cmd))]
        return self.ctl_argv(argv)

    def ssh(self, host: str, cmd, check: bool = False, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run cmd (a shell string, or an argv list that is quoted) as root on host over SSH."""
        self.cp_dir.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(self.ssh_argv(host, cmd), text=True, capture_output=True,
                           timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise LabError(f"{host}: {cmd!r} exited {p.returncode}\n{p.stdout}{p.stderr}")
        return p

    # ------------------------------------------------------------ context manager
    def __enter__(self) -> "Lab":
        try:
            self.up()
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # ------------------------------------------------------------ state discovery
    def _nspawn_by_ns(self, procs=None) -> dict[str, list[int]]:
        procs = procs if procs is not None else scan_procs()
        res: dict[str, list[int]] = {}
        marker = f"--network-namespace-path=/run/netns/{self.ns_prefix}"
        for p in procs:
            if p.state == "Z" or not p.cmdline or "systemd-nspawn" not in p.cmdline[0]:
                continue
            for a in p.cmdline:
                if a.startswith(marker):
                    res.setdefault(a.split("/run/netns/", 1)[1], []).append(p.pid)
        return res

    def running_nodes(self) -> dict[str, int]:
        """host -> nspawn pid for nodes whose nspawn is alive and namespace exists."""
        by_ns = self._nspawn_by_ns()
        have = set(list_netns())
        return {h: by_ns[n.netns][0] for h, n in self.nodes.items()
                if n.netns in by_ns and n.netns in have}

    # ------------------------------------------------------------ network
    def _ensure_ctl(self) -> None:
        ns = self.ctl_netns
        if ns not in list_netns():
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                 "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
        links = {l["ifname"] for l in json.loads(run(["ip", "-n", ns, "-j", "link"]).stdout)}
        cmds = []
        for i, net in enumerate(self.networks):
            br = self.bridge(i)
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

    def _create_node_net(self, nodes: list[Node]) -> None:
        if not nodes:
            return
        run(["ip", "-b", "-"], input="".join(f"netns add {n.netns}\n" for n in nodes))
        cmds = []
        for n in nodes:
            cmds += [f"link add {n.veth} address {n.peer_mac} type veth peer name eth0 "
                     f"address {n.mac} netns {n.netns}",
                     f"link set {n.veth} alias {n.name}",
                     f"link set {n.veth} master {self.bridge(n.net_index)} up"]
            for i, (idx, iface, xveth) in enumerate(n.extra, 1):
                mac = ":".join(f"{b:02x}" for b in iface.ip.packed)
                cmds += [f"link add {xveth} address 02:01:{mac} type veth peer name eth{i} "
                         f"address 02:00:{mac} netns {n.netns}",
                         f"link set {xveth} alias {n.name}-eth{i}",
                         f"link set {xveth} master {self.bridge(idx)} up"]
        run(["ip", "-n", self.ctl_netns, "-b", "-"], input="\n".join(cmds) + "\n")

        def inner(n: Node):
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
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(inner, nodes))

    def _delete_node_net(self, nodes: list[Node], timeout: float = 10) -> None:
        have = set(list_netns())
        gone = [n for n in nodes if n.netns in have]
        if gone:
            run(["ip", "-b", "-"], input="".join(f"netns del {n.netns}\n" for n in gone),
                check=False)
        if self.ctl_netns not in list_netns():
            return
        deadline = time.monotonic() + timeout
        while True:
            links = {l["ifname"] for l in json.loads(
                run(["ip", "-n", self.ctl_netns, "-j", "link"]).stdout)}
            left = [n for n in nodes
                    if n.veth in links or any(x[2] in links for x in n.extra)]
            if not left:
                return
            if time.monotonic() > deadline:
                # The namespace is held by something; remove the veths ourselves.
                for n in left:
                    for v in [n.veth] + [x[2] for x in n.extra]:
                        if v in links:
                            run(["ip", "-n", self.ctl_netns, "link", "del", v], check=False)
                return
            time.sleep(0.05)

    # ------------------------------------------------------------ keys and disks
    def _ensure_key(self) -> None:
        self.key_dir.mkdir(parents=True, exist_ok=True)
        if not self.key.exists() or not self.key.with_suffix(".pub").exists():
            self.key.unlink(missing_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                 f"kubeflat-lab-{self.name}", "-f", str(self.key)])
        self.key.chmod(0o600)

    def _prepare_disk(self, n: Node, rootfs: Path) -> None:
        d = self.node_dir(n.name)
        upper, work, merged = d / "upper", d / "work", d / "merged"
        for p in (upper, work, merged):
            p.mkdir(parents=True, exist_ok=True)
        if str(merged) not in mounts_under(merged):
            run(["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(merged)])
        if n.router is not None:           # from the inventory, on every boot
            self._write_router_config(n, merged)
        if (d / "initialized").exists():
            return
        etc = merged / "etc"
        (etc / "hostname").write_text(f"{n.name}\n")
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{n.name}",
                 "::1\tlocalhost ip6-localhost ip6-loopback", "",
                 f"# kubeflat lab {self.name}"]
        hosts += [f"{o.addr}\t{o.name}" for o in self.nodes.values()]
        (etc / "hosts").write_text("\n".join(hosts) + "\n")
        key = etc / "ssh/ssh_host_ed25519_key"
        for f in (key, key.with_suffix(".pub")):
            f.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{n.name}",
             "-f", str(key)])
        (d / "initialized").write_text(f"{n.name} {n.addr}\n")

    def router_config(self, host: str) -> str:
        """The FRR config the lab gives router ``host`` (from the inventory)."""
        n = self.nodes[host]
        nodes, routers = router_neighbors(self.topo, host)
        hv = self.topo.hostvars.get(host, {})
        return frr_config(
            host, str(n.addr), n.router["asn"], nodes, routers,
            str(hv.get("kubeflat_pod_cidr") or "10.244.0.0/16"),
            int(hv.get("kubeflat_node_pod_prefix") or 24), [str(x) for x in self.networks],
            int(hv.get("kubeflat_bgp_keepalive_time") or 3),
            int(hv.get("kubeflat_bgp_hold_time") or 9), hv.get("kubeflat_bgp_password") or None)

    def _write_router_config(self, n: Node, merged: Path) -> None:
        etc = merged / "etc/frr"
        ids = {}
        for line in (merged / "etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == "frr":
                ids = {"uid": int(f[2]), "gid": int(f[3])}
        if not ids or not (etc / "daemons").exists():
            raise LabError(f"{n.name}: FRR is not in the lab rootfs (PACKAGES needs frr); "
                           "rebuild it: kubeflat_lab.py rootfs --force")
        daemons = (etc / "daemons").read_text()
        (etc / "daemons").write_text(re.sub(r"(?m)^bgpd=no$", "bgpd=yes", daemons))
        conf = etc / "frr.conf"
        conf.write_text(self.router_config(n.name))
        os.chown(conf, ids["uid"], ids["gid"])
        conf.chmod(0o640)
        wants = merged / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "frr.service"
        if not link.is_symlink():
            link.symlink_to("/lib/systemd/system/frr.service")

    def _write_known_hosts(self) -> None:
        lines = []
        for h, n in self.nodes.items():
            pub = self.node_dir(h) / "upper/etc/ssh/ssh_host_ed25519_key.pub"
            with contextlib.suppress(OSError):
                kt, kd = pub.read_text().split()[:2]
                lines.append(f"{n.addr} {kt} {kd}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.known_hosts.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(self.known_hosts)

    # ------------------------------------------------------------ boot / stop
    def cgroups(self, host: str | None = None) -> list[Path]:
        """Per-lab (per-node) cgroups: without them every nspawn would put its container in
        the same /payload cgroup and the nodes' systemd instances would share unit cgroups."""
        sub = Path("kubeflat-lab") / self.name
        if host is not None:
            sub = sub / self.node_dir(host).name
        return [r / sub for r in cgroup_roots()]

    def _spawn(self, n: Node) -> subprocess.Popen:
        d = self.node_dir(n.name)
        cgs = self.cgroups(n.name)
        for cg in cgs:
            rmdir_tree(cg)
            cg.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network",
                   KUBEFLAT_CGROUPS=" ".join(map(str, cgs)))
        argv = ["sh", "-c", 'for c in $KUBEFLAT_CGROUPS; do echo $$ > "$c/cgroup.procs" || '
                'exit 97; done; unset KUBEFLAT_CGROUPS; exec "$@"', "kubeflat-spawn",
                "systemd-nspawn", "-q", "-b", "-D", str(d / "merged"), "-M", n.machine,
                f"--hostname={n.name}", "--register=no", "--keep-unit",
                "--capability=CAP_NET_ADMIN",
                f"--network-namespace-path=/run/netns/{n.netns}",
                f"--bind-ro={self.key.with_suffix('.pub')}:/root/.ssh/authorized_keys",
                "--console=read-only", "--resolv-conf=off", "--timezone=off",
                "--link-journal=no"]
        console = open(d / "console.log", "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            console.close()
        self._popen[n.name] = p
        (d / "nspawn.pid").write_text(f"{p.pid}\n")
        return p

    def _wait_sshd(self, nodes: list[Node], timeout: float) -> dict[str, float]:
        if not nodes:
            return {}
        probe = subprocess.Popen(self.ctl_argv([sys.executable, "-c", PROBE, timeout,
                                                *[str(n.addr) for n in nodes]]),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        dead: list[Node] = []
        while probe.poll() is None:
            time.sleep(0.5)
            by_ns = self._nspawn_by_ns()
            dead = [n for n in nodes if n.netns not in by_ns]
            if dead:
                probe.kill()
                break
        out, err = probe.communicate()
        ready = {}
        with contextlib.suppress(ValueError):
            ready = json.loads(out or "{}")
        by_addr = {str(n.addr): n.name for n in nodes}
        ready_hosts = {by_addr[a]: t for a, t in ready.items()}
        missing = [n for n in nodes if n.name not in ready_hosts]
        if dead or missing:
            bad = dead or missing
            detail = []
            for n in bad[:3]:
                with contextlib.suppress(OSError):
                    tail = (self.node_dir(n.name) / "console.log").read_text(
                        errors="replace").splitlines()[-12:]
                    detail.append(f"--- {n.name} console.log (tail):\n" + "\n".join(tail))
            what = "exited during boot" if dead else f"no sshd within {timeout:.0f}s"
            raise LabError(f"lab {self.name}: {', '.join(n.name for n in bad)}: {what}\n"
                           + "\n".join(detail) + (f"\n{err.strip()}" if err.strip() else "")
                           + f"\nTear down with: kubeflat_lab.py down --inventory "
                             f"{self.inventory}")
        return ready_hosts

    def _raise_inotify(self, extra_nodes: int) -> None:
        total = extra_nodes + sum(1 for ns in list_netns()
                                  if ns.startswith("kflab-") and not ns.endswith("-ctl"))
        if total < 8:
            return
        with flock(RUN_ROOT / "inotify.lock"):
            cur = int(INOTIFY_FILE.read_text())
            if cur >= INOTIFY_INSTANCES:
                return
            orig = RUN_ROOT / "inotify.orig"
            if not orig.exists():
                orig.write_text(f"{cur}\n")
            INOTIFY_FILE.write_text(f"{INOTIFY_INSTANCES}\n")
            self._log(f"fs.inotify.max_user_instances {cur} -> {INOTIFY_INSTANCES} "
                      "(restored when the last lab goes down)")

    def _restore_inotify(self) -> None:
        with flock(RUN_ROOT / "inotify.lock"):
            orig = RUN_ROOT / "inotify.orig"
            if not orig.exists() or any(ns.startswith("kflab-") for ns in list_netns()):
                return
            with contextlib.suppress(OSError, ValueError):
                INOTIFY_FILE.write_text(f"{int(orig.read_text())}\n")
            orig.unlink(missing_ok=True)

    def _close_ssh(self, addrs: set[str] | None = None, procs=None) -> None:
        """Close SSH ControlPersist masters (ansible's and ours) of the controller namespace.

        With addrs: only the masters for those addresses (`ssh -O exit` on their control
        sockets: no network traffic). Without: every ssh process in the namespace.
        """
        ino = _netns_ino(self.ctl_netns)
        if ino is None:
            return
        if addrs is not None:
            def close(args):
                addr, path = args
                run(self.ctl_argv(["ssh", "-O", "exit", "-o", f"ControlPath={path}",
                                   "-l", "root", addr]), check=False, timeout=10)
            jobs = []
            for a in addrs:
                jobs.append((a, f"{self.cp_dir}/lab-%C"))           # Lab.ssh()'s masters
                for port in ("None", "22"):                          # ansible's naming
                    cp = self.cp_dir / hashlib.sha1(f"{a}-{port}-root".encode()).hexdigest()[:10]
                    if cp.exists():
                        jobs.append((a, str(cp)))
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(close, jobs))
            return
        procs = procs if procs is not None else scan_procs()
        mine = _ancestors()
        pids = [p.pid for p in procs
                if p.netns == ino and p.pid not in mine and _comm(p.pid) == "ssh"]
        kill_pids(pids, signal.SIGTERM)
        left = wait_dead(pids, 2)
        kill_pids(left, signal.SIGKILL)

    def _stop_nodes(self, nodes: list[Node], graceful: bool, timeout: float = STOP_TIMEOUT,
                    procs=None):
        procs = procs if procs is not None else scan_procs()
        by_ns = self._nspawn_by_ns(procs)
        mine = _ancestors()
        inos = {n.name: _netns_ino(n.netns) for n in nodes}
        in_ns = {n.name: [p for p in procs if inos[n.name] is not None
                          and p.netns == inos[n.name] and p.pid not in mine] for n in nodes}
        nspawns = [pid for n in nodes for pid in by_ns.get(n.netns, [])]
        if graceful:
            inits = [p.pid for n in nodes for p in in_ns[n.name] if _ns_pid1(p.pid)]
            kill_pids(inits, signal.SIGRTMIN + 4)           # systemd: poweroff
            left = wait_dead(nspawns, timeout)
            if left:
                self._log(f"{len(left)} node(s) did not power off in {timeout:.0f}s; killing")
            procs = scan_procs()
            in_ns = {n.name: [p for p in procs if inos[n.name] is not None
                              and p.netns == inos[n.name] and p.pid not in mine]
                     for n in nodes}
        # Kill everything in the node namespaces (container init first: its PID namespace
        # dies with it), then nspawn.
        victims = [p.pid for n in nodes for p in in_ns[n.name]]
        kill_pids(victims, signal.SIGKILL)
        left = wait_dead(nspawns, timeout)
        kill_pids(left, signal.SIGKILL)
        left = wait_dead(nspawns + victims, 5)
        for n in nodes:
            p = self._popen.pop(n.name, None)
            if p is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=2)
        if left:
            self._log(f"warning: processes still alive after SIGKILL: {left}")

    def _unmount(self, path: Path) -> None:
        def one(mp: str) -> None:
            for _ in range(50):
                if umount(mp):
                    return
                time.sleep(0.1)
            self._log(f"warning: {mp} busy; lazy unmount")
            umount(mp, lazy=True)
        mps = sorted(mounts_under(path), key=len, reverse=True)
        nested = [m for m in mps if any(m != o and m.startswith(o + "/") for o in mps)]
        for mp in nested:                       # deepest first, serially
            one(mp)
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, [m for m in mps if m not in nested]))

    # ------------------------------------------------------------ public operations
    def up(self, fresh: bool = False) -> dict:
        """Boot every node not already running (idempotent). fresh=True first tears down
        whatever of this lab exists (new disks): what a test fixture usually wants."""
        t0 = time.monotonic()
        rootfs = ensure_rootfs()
        t_rootfs = time.monotonic() - t0
        with self._lock():
            self._ensure_key()
            state = self.state_dir / "state.json"
            if self.ctl_netns in list_netns() and state.exists() and not fresh:
                with contextlib.suppress(ValueError, OSError):
                    other = json.loads(state.read_text()).get("inventory")
                    if other and other != str(self.inventory):
                        raise LabError(
                            f"lab {self.name} is already up from another inventory ({other}); "
                            "give this inventory its own kubeflat_lab_name, or take that lab "
                            "down first")
            if fresh or self.ctl_netns not in list_netns():
                self._sweep(quiet=True)          # leftovers of a crashed lab of this name
            self.cp_dir.mkdir(parents=True, exist_ok=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._ensure_ctl()
            running = self.running_nodes()
            # Nodes of this lab that are no longer in the inventory.
            known = {n.netns for n in self.nodes.values()} | {self.ctl_netns}
            stale_ns = [ns for ns in list_netns()
                        if ns.startswith(self.ns_prefix) and ns not in known]
            if stale_ns:
                self._sweep_ns(stale_ns)
            todo = [n for h, n in self.nodes.items() if h not in running]
            if todo:
                # Remnants of half-started nodes (netns without nspawn, or the reverse).
                self._stop_nodes(todo, graceful=False, timeout=3)
                self._delete_node_net(todo)
                self._raise_inotify(len(todo))
                t1 = time.monotonic()
                self._create_node_net(todo)
                t2 = time.monotonic()

                # Disks first, then all spawns: preparing disks while earlier nodes boot
                # competes for the same CPUs and is slower overall.
                with ThreadPoolExecutor(min(8, len(todo))) as ex:
                    list(ex.map(lambda n: self._prepare_disk(n, rootfs), todo))
                t3 = time.monotonic()
                with ThreadPoolExecutor(min(8, len(todo))) as ex:   # overlaps fork/exec waits
                    list(ex.map(self._spawn, todo))
                self._write_known_hosts()
                self._write_state()
                self._debug(f"network {t2 - t1:.2f}s, disks {t3 - t2:.2f}s, "
                            f"spawn {time.monotonic() - t3:.2f}s")
            self.playbook_binary()
            t_boot = time.monotonic()
            ready = self._wait_sshd(todo, self.boot_timeout)
        took = time.monotonic() - t0
        self.last_up = {"lab": self.name, "booted": [n.name for n in todo],
                        "already_running": sorted(running), "seconds": round(took, 2),
                        "rootfs_seconds": round(t_rootfs, 2),
                        "sshd_wait_seconds": round(time.monotonic() - t_boot, 2),
                        "sshd_ready": ready}
        self._summary(f"lab {self.name}: {len(self.nodes)} node(s) up in {took:.1f}s "
                  f"({len(todo)} booted, {len(running)} already running)")
        return self.last_up

    def _write_state(self) -> None:
        state = {"lab": self.name, "inventory": str(self.inventory),
                 "ctl_netns": self.ctl_netns,
                 "networks": [str(n) for n in self.networks],
                 "nodes": {h: {"address": str(n.addr), "netns": n.netns,
                               "disk": str(self.node_dir(h))} for h, n in self.nodes.items()}}
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=1) + "\n")

    def _sweep_ns(self, names: list[str]) -> None:
        """Stop nodes given only by namespace name (not in the current inventory)."""
        fake = [Node(name=ns, addr=ipaddress.IPv4Address("0.0.0.0"),
                     net=ipaddress.IPv4Network("0.0.0.0/32"), net_index=0, netns=ns,
                     veth="", machine="") for ns in names]
        self._stop_nodes(fake, graceful=False, timeout=5)
        run(["ip", "-b", "-"], input="".join(f"netns del {ns}\n" for ns in names), check=False)
        for ns in names:
            d = self.disk_dir / ns[len(self.ns_prefix):]
            self._unmount(d)
            shutil.rmtree(d, ignore_errors=True)

    def _sweep(self, quiet=False) -> dict:
        """Remove everything of this lab found by naming prefix (state file not needed)."""
        t0 = time.monotonic()
        procs = scan_procs()
        self._close_ssh(procs=procs)
        names = [ns for ns in list_netns() if ns.startswith(self.ns_prefix)]
        node_ns = [ns for ns in names if ns != self.ctl_netns]
        by_ns = self._nspawn_by_ns(procs)
        node_ns += [ns for ns in by_ns if ns not in node_ns]      # nspawn whose netns is gone
        fake = [Node(name=ns, addr=ipaddress.IPv4Address("0.0.0.0"),
                     net=ipaddress.IPv4Network("0.0.0.0/32"), net_index=0, netns=ns,
                     veth="", machine="") for ns in node_ns]
        self._stop_nodes(fake, graceful=False, timeout=5, procs=procs)
        # Anything else still inside the controller namespace (ansible, test servers...).
        ino = _netns_ino(self.ctl_netns)
        if ino is not None:
            mine = _ancestors()
            rest = [p.pid for p in scan_procs() if p.netns == ino and p.pid not in mine]
            kill_pids(rest, signal.SIGTERM)
            kill_pids(wait_dead(rest, 2), signal.SIGKILL)
            wait_dead(rest, 3)
        self._unmount(self.disk_dir)
        cgs = self.cgroups()
        with contextlib.suppress(OSError):
            node_cgs = [d for cg in cgs if cg.is_dir() for d in cg.iterdir() if d.is_dir()]
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(rmdir_tree, node_cgs))
        for cg in cgs:
            rmdir_tree(cg)
            with contextlib.suppress(OSError):
                cg.parent.rmdir()          # kubeflat-lab/ itself, once no lab uses it
        if names:
            run(["ip", "-b", "-"], input="".join(f"netns del {ns}\n" for ns in names),
                check=False)
        # Defensive: the lab never creates links in the root namespace, but a crashed
        # older run might have; remove any of ours by name.
        for l in json.loads(run(["ip", "-j", "link"]).stdout):
            if l["ifname"].startswith(("kf-", "kfbr", "kfh", "kfx")):
                run(["ip", "link", "del", l["ifname"]], check=False)
        trees = [self.cp_dir, self.state_dir]
        with contextlib.suppress(OSError):
            trees += list(self.disk_dir.iterdir())
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda d: shutil.rmtree(d, ignore_errors=True), trees))
        shutil.rmtree(self.disk_dir, ignore_errors=True)
        for p in list(self._popen.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=1)
        self._popen.clear()
        self._restore_inotify()
        leftovers = self.leftovers()
        if not quiet:
            msg = f"lab {self.name}: down in {time.monotonic() - t0:.1f}s"
            self._summary(msg + (f"; LEFTOVERS: {leftovers}" if any(leftovers.values()) else
                             " (no namespace, mount or process left)"))
        return leftovers

    def leftovers(self) -> dict:
        procs = self._nspawn_by_ns()
        return {"netns": [ns for ns in list_netns() if ns.startswith(self.ns_prefix)],
                "mounts": mounts_under(self.disk_dir),
                "nspawn_pids": sorted(pid for v in procs.values() for pid in v)}

    def down(self) -> dict:
        with self._lock():
            return self._sweep()

    def restart(self, host: str, timeout: float | None = None) -> float:
        """Real reboot of one node: poweroff, new netns+veth (same MAC/IP), boot, sshd."""
        n = self.nodes[host] if host in self.nodes else None
        if n is None:
            raise LabError(f"unknown lab host {host!r}")
        t0 = time.monotonic()
        with self._lock():
            if n.netns not in list_netns() or self.ctl_netns not in list_netns():
                raise LabError(f"{host} is not running (lab {self.name} is not up?)")
            self._close_ssh({str(n.addr)})
            self._stop_nodes([n], graceful=True)
            self._delete_node_net([n])
            self._create_node_net([n])
            self._spawn(n)
            self._wait_sshd([n], timeout or self.boot_timeout)
        took = time.monotonic() - t0
        self._summary(f"{host} restarted in {took:.1f}s")
        return took

    def status(self) -> list[dict]:
        running = self.running_nodes()
        ready = {}
        if self.ctl_netns in list_netns() and running:
            p = run(self.ctl_argv([sys.executable, "-c", PROBE, "1.5",
                                   *[self.hosts[h] for h in running]]), check=False)
            with contextlib.suppress(ValueError):
                ready = json.loads(p.stdout or "{}")
        return [{"host": h, "address": str(n.addr), "network": str(n.net), "netns": n.netns,
                 "nspawn_pid": running.get(h), "sshd": str(n.addr) in ready}
                for h, n in self.nodes.items()]


# --------------------------------------------------------------------------- CLI

def _rel(p: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(p.relative_to(Path.cwd()))
    return str(p)


def main(argv=None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)      # `... up | head` must not traceback
    ap = argparse.ArgumentParser(prog="kubeflat_lab.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, help, host=False, inv=True):
        sp = sub.add_parser(name, help=help)
        if inv:
            sp.add_argument("--inventory", "-i", required=True)
        if host:
            sp.add_argument("--host", required=True)
        return sp

    add("up", "boot one node per inventory host (idempotent)")
    sp = sub.add_parser("down", help="stop the lab and remove everything it made")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--inventory", "-i")
    g.add_argument("--all", action="store_true", help="every kubeflat lab on this machine")
    add("status", "show the lab's nodes")
    sp = add("exec", "run one command as root on a node (over SSH)", host=True)
    sp.add_argument("command", nargs=argparse.REMAINDER)
    add("shell", "interactive root shell on a node", host=True)
    sp = add("play", "run ansible-playbook inside the lab's controller namespace")
    sp.add_argument("--playbook", required=True)
    sp.add_argument("extra", nargs=argparse.REMAINDER)
    add("restart", "reboot one node (namespace and veth recreated)", host=True)
    sp = add("rootfs", "build/refresh the cached node rootfs", inv=False)
    sp.add_argument("--force", action="store_true", help="rebuild even if cached")
    a = ap.parse_args(argv)

    def rest(args):
        return args[1:] if args and args[0] == "--" else args

    try:
        if a.cmd == "rootfs":
            print(ensure_rootfs(force=a.force))
            return 0
        if a.cmd == "down" and a.all:
            rc = 0
            for name in Lab.existing_names():
                left = Lab.by_name(name).down()
                if any(left.values()):
                    print(f"lab {name}: leftovers: {left}", file=sys.stderr)
                    rc = 1
            return rc
        lab = Lab(a.inventory)
        lab.cli = True
        inv = _rel(lab.inventory)
        if a.cmd == "up":
            info = lab.up()
            w = max(len(h) for h in lab.hosts)
            print(f"lab {lab.name}: {len(lab.hosts)} node(s) up in {info['seconds']:.1f}s "
                  f"({len(info['booted'])} booted, {len(info['already_running'])} already "
                  "running)")
            items = list(lab.nodes.items())
            for h, n in items[:12]:
                print(f"  {h:<{w}}  {str(n.addr):<15}  {n.net}  netns {n.netns}")
            if len(items) > 12:
                print(f"  ... and {len(items) - 12} more (status: make lab-status "
                      f"INVENTORY={inv})")
            gws = ", ".join(f"{next(n.hosts())}/{n.prefixlen}" for n in lab.networks)
            first = next(iter(lab.hosts))
            me = "lab/kubeflat_lab.py"
            print(f"controller/router namespace: {lab.ctl_netns} ({gws})\n"
                  f"enter a node:  make lab-shell INVENTORY={inv} HOST={first}   "
                  f"(or {me} shell -i {inv} --host {first})\n"
                  f"run a command: make lab-exec INVENTORY={inv} HOST={first} CMD='ip route'\n"
                  f"run ansible:   make lab-play INVENTORY={inv} PLAYBOOK=site.yml   "
                  f"(or {lab.playbook_binary()} -i {inv} site.yml)\n"
                  f"tear down:     make lab-down INVENTORY={inv}")
            return 0
        if a.cmd == "down":
            t0 = time.monotonic()
            left = lab.down()
            if any(left.values()):
                print(f"lab {lab.name}: leftovers: {left}", file=sys.stderr)
                return 1
            print(f"lab {lab.name}: down in {time.monotonic() - t0:.1f}s "
                  "(no namespace, mount or process left)")
            return 0
        if a.cmd == "status":
            rows = lab.status()
            up = sum(1 for r in rows if r["nspawn_pid"])
            print(f"lab {lab.name}: {up}/{len(rows)} node(s) running; controller namespace "
                  f"{lab.ctl_netns} {'present' if lab.ctl_netns in list_netns() else 'absent'}")
            w = max(len(r["host"]) for r in rows)
            for r in rows:
                st = ("up, sshd ok" if r["sshd"] else "up, sshd not answering") \
                    if r["nspawn_pid"] else "down"
                print(f"  {r['host']:<{w}}  {r['address']:<15}  {st}")
            return 0
        if a.cmd in ("exec", "shell"):
            lab._addr(a.host)
            if lab.ctl_netns not in list_netns():
                raise LabError(f"lab {lab.name} is not up: make lab-up INVENTORY={inv}")
            lab.cp_dir.mkdir(parents=True, exist_ok=True)
            if a.cmd == "exec":
                cmd = rest(a.command)
                if not cmd:
                    ap.error("exec needs a command after --")
                # ssh semantics: words are joined with spaces and run by the remote shell.
                argv = lab.ssh_argv(a.host, " ".join(cmd))
            else:
                argv = lab.ssh_argv(a.host, None, tty=True)
            return subprocess.call(argv)
        if a.cmd == "play":
            env = lab.ansible_env()
            argv = lab.ctl_argv([VENV_BIN / "ansible-playbook", "-i", lab.inventory,
                                 a.playbook, *rest(a.extra)])
            if lab.ctl_netns not in list_netns():
                raise LabError(f"lab {lab.name} is not up: make lab-up INVENTORY={inv}")
            lab.cp_dir.mkdir(parents=True, exist_ok=True)
            return subprocess.call(argv, env=env)
        if a.cmd == "restart":
            took = lab.restart(a.host)
            print(f"{a.host}: restarted in {took:.1f}s; sshd answers")
            return 0
    except LabError as e:
        print(f"kubeflat_lab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
