"""SSH into lab nodes from the controller namespace: the lab's key, the nodes' host keys
(known_hosts), the ssh command line, the sshd readiness probe, and closing ControlPersist
masters (nodes hang in shutdown while those are open)."""
from __future__ import annotations

import contextlib
import hashlib
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import run
from .network import netns_exec

# Run inside the controller namespace: wait until every address answers with an SSH banner
# (argv: timeout, addresses...); prints {address: seconds} and exits 1 unless all answered.
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


def probe_argv(ctl_ns: str, timeout, addrs) -> list[str]:
    return netns_exec(ctl_ns, [sys.executable, "-c", PROBE, timeout, *addrs])


def ensure_key(key: Path, comment: str) -> None:
    """The lab's root key (ed25519, no passphrase), created once."""
    key.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists() or not key.with_suffix(".pub").exists():
        key.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    key.chmod(0o600)


def write_known_hosts(path: Path, entries) -> None:
    """known_hosts from (address, host public key file) pairs; unreadable keys are skipped."""
    lines = []
    for addr, pub in entries:
        with contextlib.suppress(OSError):
            kt, kd = pub.read_text().split()[:2]
            lines.append(f"{addr} {kt} {kd}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.rename(path)


def ssh_argv(ctl_ns: str, key: Path, known_hosts: Path, cp_dir: Path, addr: str, cmd=None, *,
             tty=False) -> list[str]:
    """ssh as root to ``addr`` from the controller namespace, multiplexed (ControlPersist)."""
    argv = ["ssh", "-i", str(key), "-l", "root",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={cp_dir}/lab-%C",
            "-o", "ControlPersist=120"]
    if tty:
        argv.append("-t")
    argv.append(addr)
    if cmd is not None:
        argv += ["--", cmd if isinstance(cmd, str) else shlex.join(map(str, cmd))]
    return netns_exec(ctl_ns, argv)


def close_masters(ctl_ns: str, cp_dir: Path, addrs) -> None:
    """`ssh -O exit` on the control sockets for ``addrs`` (ours and ansible's): no traffic."""
    def close(args):
        addr, path = args
        run(netns_exec(ctl_ns, ["ssh", "-O", "exit", "-o", f"ControlPath={path}",
                                "-l", "root", addr]), check=False, timeout=10)
    jobs = []
    for a in addrs:
        jobs.append((a, f"{cp_dir}/lab-%C"))                    # Lab.ssh()'s masters
        for port in ("None", "22"):                              # ansible's naming
            cp = cp_dir / hashlib.sha1(f"{a}-{port}-root".encode()).hexdigest()[:10]
            if cp.exists():
                jobs.append((a, str(cp)))
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(close, jobs))
