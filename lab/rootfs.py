"""The node root filesystem: one debootstrap tree per package list, customised once into a
read-only rootfs that every node's overlay sits on, cached in /var/cache/kubeflat.

The cache key covers PACKAGES, the suite, ROOTFS_RECIPE, SSHD_DROPIN, MASK_UNITS and
DISABLE_UNITS: change any of them (bump ROOTFS_RECIPE when customize_rootfs() changes) and the
next `up` builds a new rootfs; older unused ones are pruned."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from .common import CACHE_ROOT, LabError, flock, log, run, short_hash

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
