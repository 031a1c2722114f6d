"""The lab's command line (``python -m lab``, the Makefile's lab-* targets): argument parsing
and printing only; every operation is a call on :class:`lab.api.Lab`."""
from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from .api import Lab
from .common import VENV_BIN, LabError
from .network import list_netns
from .rootfs import ensure_rootfs

DESCRIPTION = ("kubeflat lab: one booted systemd-nspawn node per inventory host, on a flat "
               "routed network.")


def _rel(p: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(p.relative_to(Path.cwd()))
    return str(p)


def main(argv=None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)      # `... up | head` must not traceback
    ap = argparse.ArgumentParser(prog="python -m lab", description=DESCRIPTION)
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
            me = "python -m lab"
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
        print(f"lab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1

