"""Node lifecycle: a node's disk (an overlay over the shared rootfs plus its identity), booting
it with systemd-nspawn in its own cgroups, waiting for its sshd, stopping it (container init
first, then nspawn), and the inotify limit many nodes need."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from .cleanup import ancestors, kill_pids, mounts_under, ns_pid1, rmdir_tree, scan_procs, \
    wait_dead
from .common import RUN_ROOT, LabError, flock, run
from .network import list_netns, netns_ino
from .ssh import probe_argv
from .topology import Node

INOTIFY_INSTANCES = 8192
INOTIFY_FILE = Path("/proc/sys/fs/inotify/max_user_instances")


def nspawn_by_ns(ns_prefix: str, procs=None) -> dict[str, list[int]]:
    """namespace -> pids of the systemd-nspawn processes booted into it (this lab's only)."""
    procs = procs if procs is not None else scan_procs()
    res: dict[str, list[int]] = {}
    marker = f"--network-namespace-path=/run/netns/{ns_prefix}"
    for p in procs:
        if p.state == "Z" or not p.cmdline or "systemd-nspawn" not in p.cmdline[0]:
            continue
        for a in p.cmdline:
            if a.startswith(marker):
                res.setdefault(a.split("/run/netns/", 1)[1], []).append(p.pid)
    return res


def prepare_disk(d: Path, n: Node, rootfs: Path, lab_name: str, all_nodes,
                 router_config=None) -> None:
    """Mount the node's overlay at ``d``/merged; on first use give it its identity (hostname,
    machine-id, /etc/hosts of the lab, SSH host key). ``router_config(n, merged)`` writes a
    router's FRR config on every boot."""
    upper, work, merged = d / "upper", d / "work", d / "merged"
    for p in (upper, work, merged):
        p.mkdir(parents=True, exist_ok=True)
    if str(merged) not in mounts_under(merged):
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(merged)])
    if n.router is not None and router_config is not None:   # from the inventory, every boot
        router_config(n, merged)
    if (d / "initialized").exists():
        return
    etc = merged / "etc"
    (etc / "hostname").write_text(f"{n.name}\n")
    (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
    hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{n.name}",
             "::1\tlocalhost ip6-localhost ip6-loopback", "",
             f"# kubeflat lab {lab_name}"]
    hosts += [f"{o.addr}\t{o.name}" for o in all_nodes]
    (etc / "hosts").write_text("\n".join(hosts) + "\n")
    key = etc / "ssh/ssh_host_ed25519_key"
    for f in (key, key.with_suffix(".pub")):
        f.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{n.name}",
         "-f", str(key)])
    (d / "initialized").write_text(f"{n.name} {n.addr}\n")


def spawn(d: Path, n: Node, pubkey: Path, cgs: list[Path]) -> subprocess.Popen:
    """Boot the node: systemd-nspawn in the node's namespace, moved into its own cgroups
    first (otherwise every container shares /payload and unit cgroups)."""
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
            f"--bind-ro={pubkey}:/root/.ssh/authorized_keys",
            "--console=read-only", "--resolv-conf=off", "--timezone=off",
            "--link-journal=no"]
    console = open(d / "console.log", "ab")
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        console.close()
    (d / "nspawn.pid").write_text(f"{p.pid}\n")
    return p


def wait_sshd(ctl_ns: str, ns_prefix: str, nodes: list[Node], timeout: float, disk_of,
              what_lab: str) -> dict[str, float]:
    """host -> seconds until its sshd answered; LabError (with console tails) when a node
    exits during boot or does not answer in time. ``disk_of(host)`` is the node's disk dir;
    ``what_lab`` = (lab name, inventory) for the message."""
    if not nodes:
        return {}
    probe = subprocess.Popen(probe_argv(ctl_ns, timeout, [str(n.addr) for n in nodes]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dead: list[Node] = []
    while probe.poll() is None:
        time.sleep(0.5)
        by_ns = nspawn_by_ns(ns_prefix)
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
                tail = (disk_of(n.name) / "console.log").read_text(
                    errors="replace").splitlines()[-12:]
                detail.append(f"--- {n.name} console.log (tail):\n" + "\n".join(tail))
        what = "exited during boot" if dead else f"no sshd within {timeout:.0f}s"
        name, inventory = what_lab
        raise LabError(f"lab {name}: {', '.join(n.name for n in bad)}: {what}\n"
                       + "\n".join(detail) + (f"\n{err.strip()}" if err.strip() else "")
                       + f"\nTear down with: python -m lab down --inventory {inventory}")
    return ready_hosts


def _procs_in(nodes: list[Node], inos: dict, procs, mine: set) -> dict:
    return {n.name: [p for p in procs if inos[n.name] is not None
                     and p.netns == inos[n.name] and p.pid not in mine] for n in nodes}


def stop_nodes(nodes: list[Node], ns_prefix: str, graceful: bool, timeout: float, log,
               procs=None) -> list[int]:
    """Stop nodes: with ``graceful``, poweroff through the container's init and wait; then
    SIGKILL everything in their namespaces (init first: its PID namespace dies with it), then
    nspawn. Returns the pids still alive afterwards."""
    procs = procs if procs is not None else scan_procs()
    by_ns = nspawn_by_ns(ns_prefix, procs)
    mine = ancestors()
    inos = {n.name: netns_ino(n.netns) for n in nodes}
    in_ns = _procs_in(nodes, inos, procs, mine)
    nspawns = [pid for n in nodes for pid in by_ns.get(n.netns, [])]
    if graceful:
        inits = [p.pid for n in nodes for p in in_ns[n.name] if ns_pid1(p.pid)]
        kill_pids(inits, signal.SIGRTMIN + 4)           # systemd: poweroff
        left = wait_dead(nspawns, timeout)
        if left:
            log(f"{len(left)} node(s) did not power off in {timeout:.0f}s; killing")
        in_ns = _procs_in(nodes, inos, scan_procs(), mine)
    victims = [p.pid for n in nodes for p in in_ns[n.name]]
    kill_pids(victims, signal.SIGKILL)
    left = wait_dead(nspawns, timeout)
    kill_pids(left, signal.SIGKILL)
    return wait_dead(nspawns + victims, 5)


def raise_inotify(extra_nodes: int, log) -> None:
    """Raise fs.inotify.max_user_instances once 8+ nodes run (or only ~20 of 50 boot)."""
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
        log(f"fs.inotify.max_user_instances {cur} -> {INOTIFY_INSTANCES} "
            "(restored when the last lab goes down)")


def restore_inotify() -> None:
    """Put the original limit back once no lab namespace is left on the machine."""
    with flock(RUN_ROOT / "inotify.lock"):
        orig = RUN_ROOT / "inotify.orig"
        if not orig.exists() or any(ns.startswith("kflab-") for ns in list_netns()):
            return
        with contextlib.suppress(OSError, ValueError):
            INOTIFY_FILE.write_text(f"{int(orig.read_text())}\n")
        orig.unlink(missing_ok=True)
