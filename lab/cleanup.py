"""Finding and removing what a lab leaves in the kernel, without spawning a process per item:
processes (read from /proc, signalled, waited for), cgroups, and mounts (umount2(2))."""
from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


def ns_pid1(pid: int) -> bool:
    """True if pid is the init (pid 1) of a nested PID namespace (a container's systemd)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                f = line.split()
                return len(f) > 2 and f[-1] == "1"
    return False


def ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            st = Path(f"/proc/{pid}/stat").read_text()
            pid = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            break
    return pids


def comm(pid: int) -> str:
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


def unmount_tree(path: Path, log) -> None:
    """Unmount everything under ``path``: nested mounts deepest first, serially, the rest in
    parallel; a mount still busy after 5 s is detached lazily (and ``log`` says so)."""
    def one(mp: str) -> None:
        for _ in range(50):
            if umount(mp):
                return
            time.sleep(0.1)
        log(f"warning: {mp} busy; lazy unmount")
        umount(mp, lazy=True)
    mps = sorted(mounts_under(path), key=len, reverse=True)
    nested = [m for m in mps if any(m != o and m.startswith(o + "/") for o in mps)]
    for mp in nested:                       # deepest first, serially
        one(mp)
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, [m for m in mps if m not in nested]))
