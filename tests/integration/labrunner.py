"""Drive playbooks against a running lab with ansible-runner's Python API.

    from labrunner import run_playbook, host_summary
    r = run_playbook(lab, "site.yml", tags="routes", limit="w1")
    assert r.rc == 0 and r.stats["failures"] == {}

ansible-runner runs `lab.playbook_binary()` (a wrapper doing `ip netns exec <ctl-ns>
ansible-playbook "$@"` with the lab's key/ssh settings), so every connection leaves from the
lab's controller namespace. Because a custom `binary` puts ansible-runner in "raw" mode, it
does not append the playbook itself: it is passed on the command line here.
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import ansible_runner

REPO = Path(__file__).resolve().parents[2]
# shared/ sits beside the repository (CI clones it there).
REFERENCE = REPO.parent / "shared" / "reference"
VENV_BIN = REPO / ".venv" / "bin"


def run_playbook(lab, playbook, tags=None, limit=None, extravars=None, check=False,
                 diff=False, inventory=None, *, skip_tags=None, envvars=None,
                 private_data_dir=None, verbosity=None, timeout=None, quiet=True):
    """Run `playbook` (path; relative paths are taken from the repo root) in `lab`.

    tags/skip_tags/limit: str or list. inventory: defaults to the lab's own inventory.
    Returns the ansible_runner.Runner: .rc, .status, .stats (ok/changed/failures/dark/
    skipped per host), .events; output(runner) gives the text output.
    """
    pb = Path(playbook)
    if not pb.is_absolute():
        pb = (REPO / pb) if (REPO / pb).exists() else pb.resolve()
    cmdline = [str(pb)]
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    env = {k: v for k, v in lab.ansible_env().items()
           if k.startswith(("ANSIBLE_", "KUBEFLAT_"))}
    env.setdefault("ANSIBLE_NOCOLOR", "1")          # output() stays greppable
    env.update(envvars or {})
    pdd = private_data_dir or tempfile.mkdtemp(prefix=f"kf-runner-{lab.name}-")
    inv = inventory if inventory is not None else lab.inventory

    def join(v):
        return ",".join(v) if isinstance(v, (list, tuple, set)) else v

    return ansible_runner.run(
        private_data_dir=str(pdd),
        binary=lab.playbook_binary(),
        cmdline=shlex.join(cmdline),
        inventory=str(Path(inv).resolve()),
        limit=join(limit),
        tags=join(tags),
        skip_tags=join(skip_tags),
        extravars=extravars,
        envvars=env,
        verbosity=verbosity,
        timeout=timeout,
        quiet=quiet,
    )


def output(runner) -> str:
    """The run's full text output (what ansible-playbook printed)."""
    path = Path(runner.config.artifact_dir) / "stdout"
    if path.exists():
        return path.read_text(errors="replace")
    return runner.stdout.read() if runner.stdout else ""


def host_summary(runner) -> dict:
    """host -> {"ok", "changed", "failures", "dark", "skipped"} counts (0 when absent)."""
    stats = runner.stats or {}
    hosts = set()
    for per_host in stats.values():
        if isinstance(per_host, dict):
            hosts |= set(per_host)
    keys = ("ok", "changed", "failures", "dark", "skipped")
    return {h: {k: (stats.get(k) or {}).get(h, 0) for k in keys} for h in sorted(hosts)}


def assert_run_ok(runner, changed=None) -> dict:
    """Assert no failed/unreachable host; if changed is given (0 typically, for an
    idempotence check), assert every host's changed count equals it. Returns host_summary."""
    summary = host_summary(runner)
    assert runner.rc == 0, f"ansible-playbook rc={runner.rc}\n{output(runner)[-4000:]}"
    bad = {h: s for h, s in summary.items() if s["failures"] or s["dark"]}
    assert not bad, f"failed/unreachable hosts: {bad}\n{output(runner)[-4000:]}"
    if changed is not None:
        diff = {h: s["changed"] for h, s in summary.items() if s["changed"] != changed}
        assert not diff, f"changed != {changed}: {diff}\n{output(runner)[-4000:]}"
    return summary

