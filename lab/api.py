"""The lab as an object: ``Lab(inventory_dir)`` builds (``up``), inspects (``status``,
``running_nodes``), reboots (``restart``) and removes (``down``) one lab, and runs commands and
playbooks in it (``ssh``, ``ansible_env``, ``playbook_binary``). Tests and the CLI use this.

    from lab import Lab
    with Lab("inventories/lab") as lab:
        lab.ssh("w1", "ip route")

Must run as root. The pieces live beside it: topology (inventory -> nodes), rootfs, network,
nodes (disk, boot, stop), routers (FRR), ssh, cleanup (processes, cgroups, mounts).
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import network, nodes, ssh
from .cleanup import ancestors, cgroup_roots, comm, kill_pids, mounts_under, rmdir_tree, \
    scan_procs, unmount_tree, wait_dead
from .common import (BOOT_TIMEOUT, CP_ROOT, DISK_ROOT, NAME_RE, REPO, RUN_ROOT, STOP_TIMEOUT,
                     VENV_BIN, LabError, flock, log, run)
from .network import list_netns, netns_ino
from .rootfs import ensure_rootfs
from .routers import router_config, write_router_config
from .topology import Node, Topology, load_topology


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
        return network.bridge_name(idx)

    def node_dir(self, host: str) -> Path:
        return self.disk_dir / self.nodes[host].netns[len(self.ns_prefix):]

    def ctl_argv(self, argv) -> list[str]:
        return network.netns_exec(self.ctl_netns, argv)

    def router_config(self, host: str) -> str:
        """The FRR config the lab gives router ``host`` (from the inventory)."""
        return router_config(self.topo, host)

    def cgroups(self, host: str | None = None) -> list[Path]:
        """Per-lab (per-node) cgroups: without them every nspawn would put its container in
        the same /payload cgroup and the nodes' systemd instances would share unit cgroups."""
        sub = Path("kubeflat-lab") / self.name
        if host is not None:
            sub = sub / self.node_dir(host).name
        return [r / sub for r in cgroup_roots()]

    def _ssh_forced_env(self) -> dict:
        return {
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.key),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.cp_dir),
            "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={self.known_hosts} "
                                       "-o IdentitiesOnly=yes",
            "KUBEFLAT_LAB_NAME": self.name,
            "KUBEFLAT_LAB_CTL_NETNS": self.ctl_netns,
        }

    @staticmethod
    def _ansible_defaults() -> dict:
        return {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
            "ANSIBLE_REMOTE_USER": "root",
        }

    def ansible_env(self) -> dict:
        env = dict(os.environ)
        env.update(self._ansible_defaults())
        env.update(self._ssh_forced_env())
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env

    def playbook_binary(self) -> str:
        """Write (and return the path of) an ansible-playbook wrapper that runs in the lab."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lines = ["#!/bin/sh", f"# kubeflat lab {self.name}: ansible-playbook inside "
                 f"{self.ctl_netns} (generated by lab/api.py)"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self._ssh_forced_env().items()]
        lines += [f': "${{{k}:={shlex.quote(v)}}}"; export {k}'
                  for k, v in self._ansible_defaults().items()]
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
        return ssh.ssh_argv(self.ctl_netns, self.key, self.known_hosts, self.cp_dir,
                            self._addr(host), cmd, tty=tty)

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
        return nodes.nspawn_by_ns(self.ns_prefix, procs)

    def running_nodes(self) -> dict[str, int]:
        """host -> nspawn pid for nodes whose nspawn is alive and namespace exists."""
        by_ns = self._nspawn_by_ns()
        have = set(list_netns())
        return {h: by_ns[n.netns][0] for h, n in self.nodes.items()
                if n.netns in by_ns and n.netns in have}

    # ------------------------------------------------------------ nodes
    def _prepare_disk(self, n: Node, rootfs: Path) -> None:
        nodes.prepare_disk(self.node_dir(n.name), n, rootfs, self.name, self.nodes.values(),
                           lambda r, merged: write_router_config(r, merged,
                                                                 self.router_config(r.name)))

    def _spawn(self, n: Node) -> subprocess.Popen:
        p = nodes.spawn(self.node_dir(n.name), n, self.key.with_suffix(".pub"),
                        self.cgroups(n.name))
        self._popen[n.name] = p
        return p

    def _wait_sshd(self, todo: list[Node], timeout: float) -> dict[str, float]:
        return nodes.wait_sshd(self.ctl_netns, self.ns_prefix, todo, timeout, self.node_dir,
                               (self.name, self.inventory))

    def _write_known_hosts(self) -> None:
        ssh.write_known_hosts(self.known_hosts, [
            (n.addr, self.node_dir(h) / "upper/etc/ssh/ssh_host_ed25519_key.pub")
            for h, n in self.nodes.items()])

    def _close_ssh(self, addrs: set[str] | None = None, procs=None) -> None:
        """Close SSH ControlPersist masters (ansible's and ours) of the controller namespace.

        With addrs: only the masters for those addresses (`ssh -O exit` on their control
        sockets: no network traffic). Without: every ssh process in the namespace.
        """
        ino = netns_ino(self.ctl_netns)
        if ino is None:
            return
        if addrs is not None:
            ssh.close_masters(self.ctl_netns, self.cp_dir, addrs)
            return
        procs = procs if procs is not None else scan_procs()
        mine = ancestors()
        pids = [p.pid for p in procs
                if p.netns == ino and p.pid not in mine and comm(p.pid) == "ssh"]
        kill_pids(pids, signal.SIGTERM)
        left = wait_dead(pids, 2)
        kill_pids(left, signal.SIGKILL)

    def _stop_nodes(self, todo: list[Node], graceful: bool, timeout: float = STOP_TIMEOUT,
                    procs=None):
        left = nodes.stop_nodes(todo, self.ns_prefix, graceful, timeout, self._log, procs)
        for n in todo:
            p = self._popen.pop(n.name, None)
            if p is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=2)
        if left:
            self._log(f"warning: processes still alive after SIGKILL: {left}")

    def _unmount(self, path: Path) -> None:
        unmount_tree(path, self._log)

    # ------------------------------------------------------------ public operations
    def up(self, fresh: bool = False) -> dict:
        """Boot every node not already running (idempotent). fresh=True first tears down
        whatever of this lab exists (new disks): what a test fixture usually wants."""
        t0 = time.monotonic()
        rootfs = ensure_rootfs()
        t_rootfs = time.monotonic() - t0
        with self._lock():
            ssh.ensure_key(self.key, f"kubeflat-lab-{self.name}")
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
            network.ensure_controller(self.ctl_netns, self.networks)
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
                network.delete_node_links(self.ctl_netns, todo)
                nodes.raise_inotify(len(todo), self._log)
                t1 = time.monotonic()
                network.create_node_links(self.ctl_netns, todo)
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

    @staticmethod
    def _ns_only(names: list[str]) -> list[Node]:
        """Nodes known only by namespace name (not in the current inventory), to stop them."""
        return [Node(name=ns, addr=ipaddress.IPv4Address("0.0.0.0"),
                     net=ipaddress.IPv4Network("0.0.0.0/32"), net_index=0, netns=ns,
                     veth="", machine="") for ns in names]

    def _sweep_ns(self, names: list[str]) -> None:
        """Stop nodes given only by namespace name (not in the current inventory)."""
        self._stop_nodes(self._ns_only(names), graceful=False, timeout=5)
        network.delete_netns(names)
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
        self._stop_nodes(self._ns_only(node_ns), graceful=False, timeout=5, procs=procs)
        # Anything else still inside the controller namespace (ansible, test servers...).
        ino = netns_ino(self.ctl_netns)
        if ino is not None:
            mine = ancestors()
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
        network.delete_netns(names)
        network.remove_root_links()
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
        nodes.restore_inotify()
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
            network.delete_node_links(self.ctl_netns, [n])
            network.create_node_links(self.ctl_netns, [n])
            self._spawn(n)
            self._wait_sshd([n], timeout or self.boot_timeout)
        took = time.monotonic() - t0
        self._summary(f"{host} restarted in {took:.1f}s")
        return took

    def status(self) -> list[dict]:
        running = self.running_nodes()
        ready = {}
        if self.ctl_netns in list_netns() and running:
            p = run(ssh.probe_argv(self.ctl_netns, "1.5", [self.hosts[h] for h in running]),
                    check=False)
            with contextlib.suppress(ValueError):
                ready = json.loads(p.stdout or "{}")
        return [{"host": h, "address": str(n.addr), "network": str(n.net), "netns": n.netns,
                 "nspawn_pid": running.get(h), "sshd": str(n.addr) in ready}
                for h, n in self.nodes.items()]
