"""What every lab module shares: where the lab keeps its files, its error, logging, running a
command, a file lock and a short stable hash."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
CACHE_ROOT = Path("/var/cache/kubeflat")          # cached rootfs + debootstrap .deb cache
DISK_ROOT = Path("/var/lib/kubeflat-lab")         # per-node overlay upper/work/merged ("disks")
RUN_ROOT = Path("/run/kubeflat-lab")              # runtime state: locks, pids, wrapper, known_hosts
CP_ROOT = Path("/tmp/kubeflat-cp")                # ansible.cfg control_path_dir; one subdir per lab

BOOT_TIMEOUT = float(os.environ.get("KUBEFLAT_LAB_BOOT_TIMEOUT", "90"))
STOP_TIMEOUT = float(os.environ.get("KUBEFLAT_LAB_STOP_TIMEOUT", "10"))
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
