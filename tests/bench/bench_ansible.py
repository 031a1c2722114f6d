#!/usr/bin/env python3
"""Benchmark: the cost of kubeflat's Ansible runs against lab fleets, as ratios to a bare ping.

Not a test: it prints numbers and asserts nothing (it does flag a "no-op" run that changed
something, because then the number is not what the row says).

For each fleet (tests/bench/inventories/<fleet>: static mode, distribution none) it
  1. boots a fresh lab (every host new) and times the first converge of site.yml (all stages
     but verify),
  2. runs ROUNDS rounds; each round runs, one after the other (alternating, so a change of
     machine load hits every command alike): a bare `ansible all -m ping`, a no-op `site.yml`
     (`--skip-tags verify`), `site.yml --tags routes` and `site.yml --tags network`,
  3. prints min / median / max seconds per command and the median over rounds of each round's
     ratio to that round's ping; and, for the median no-op run, how the CPU time splits
     between the controller (ansible-playbook, its workers and ssh) and everything else (the
     hosts' sshd and module Pythons: the lab's hosts share this machine's cores).
All commands run from inside the lab's controller namespace.

Usage: .venv/bin/python tests/bench/bench_ansible.py [--rounds 3] [--baseline GIT_REF] [fleet ...]
--baseline REF also times, on a fresh lab, the first converge and one no-op run of another
version of kubeflat (a git worktree of REF, e.g. the commit before a change), side by side.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from lab import Lab  # noqa: E402

RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def cpu_total():
    """Busy CPU seconds of the whole machine so far (/proc/stat, all cores)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(argv, env, cwd=ROOT):
    """Run one command; return (seconds, controller CPU s, other CPU s, total changed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = cpu_total()
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    controller = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    other = max(0.0, cpu_total() - busy - controller)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-3000:])
        raise SystemExit("benchmark command failed: %s" % " ".join(argv))
    changed = sum(int(m.group(3)) for m in RECAP.finditer(proc.stdout))
    return elapsed, controller, other, changed, profile(proc.stdout)


def profile(stdout, top=6):
    """The slowest tasks of a run, from the profile_tasks callback's TASKS RECAP."""
    tail = stdout.split("TASKS RECAP", 1)[-1] if "TASKS RECAP" in stdout else ""
    lines = [ln.strip() for ln in tail.splitlines() if re.search(r"-+ \d+\.\d+s$", ln)]
    return lines[:top]


def commands(lab, inventory, root=ROOT):
    ansible = lab.ctl_argv([os.path.join(ROOT, ".venv/bin/ansible"), "all", "-i", inventory,
                            "-m", "ansible.builtin.ping"])
    playbook = lab.ctl_argv([os.path.join(ROOT, ".venv/bin/ansible-playbook"), "-i", inventory,
                             os.path.join(root, "site.yml")])
    return [
        ("ansible all -m ping", ansible),
        ("site.yml (no-op, all converged)", playbook + ["--skip-tags", "verify"]),
        ("site.yml --tags routes", playbook + ["--tags", "routes"]),
        ("site.yml --tags network", playbook + ["--tags", "network"]),
    ]


def env_for(lab, root):
    env = lab.ansible_env()
    env["ANSIBLE_CONFIG"] = os.path.join(root, "ansible.cfg")
    return env


def baseline_worktree(ref):
    path = tempfile.mkdtemp(prefix="kubeflat-baseline-")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, ref], check=True,
                   capture_output=True)
    os.symlink(os.path.join(ROOT, "collections"), os.path.join(path, "collections"))
    return path


def bench_baseline(fleet, inventory, ref):
    """First converge and one no-op run of another kubeflat version, on a fresh lab."""
    path = baseline_worktree(ref)
    lab = Lab(inventory)
    try:
        lab.down()
        lab.up()
        env = env_for(lab, path)
        playbook = lab.ctl_argv([os.path.join(ROOT, ".venv/bin/ansible-playbook"), "-i",
                                 inventory, os.path.join(path, "site.yml"), "--skip-tags", "verify"])
        first = timed(playbook, env, cwd=path)
        noop = timed(playbook, env, cwd=path)
    finally:
        lab.down()
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path],
                       capture_output=True)
    return first, noop


def bench(fleet, rounds, baseline):
    inventory = os.path.join(ROOT, "tests", "bench", "inventories", fleet)
    lab = Lab(inventory)
    lab.down()                      # every host fresh: the first converge is a real one
    start = time.monotonic()
    lab.up()
    up = time.monotonic() - start
    env = env_for(lab, ROOT)
    cmds = commands(lab, inventory)
    samples = {label: [] for label, _ in cmds}
    try:
        first = timed(cmds[1][1], env)
        for _ in range(rounds):
            for label, argv in cmds:
                samples[label].append(timed(argv, env))
    finally:
        lab.down()
    base = bench_baseline(fleet, inventory, baseline) if baseline else None

    print("\n%s: %d hosts, lab up %.1f s, %d rounds (median of each round's ratio to its ping)"
          % (fleet, len(lab.hosts), up, rounds))
    print("  %-34s %7s %7s %7s %8s" % ("command", "min s", "median", "max s", "x ping"))
    pings = [s[0] for s in samples[cmds[0][0]]]
    for label, _ in cmds:
        secs = [s[0] for s in samples[label]]
        ratio = statistics.median(s / p for s, p in zip(secs, pings))
        flag = "" if label == cmds[0][0] or all(s[3] == 0 for s in samples[label]) \
            else "  (!) changed>0: not a no-op run"
        print("  %-34s %7.1f %7.1f %7.1f %7.2fx%s" % (label, min(secs), statistics.median(secs),
                                                       max(secs), ratio, flag))
    print("  %-34s %7.1f s (changed=%d)" % ("first converge, fresh hosts", first[0], first[3]))
    noop = sorted(samples[cmds[1][0]])[len(samples[cmds[1][0]]) // 2]
    print("  CPU of the median no-op run: controller %.1f s, hosts and the rest %.1f s"
          % (noop[1], noop[2]))
    print("  slowest tasks of the median no-op run (profile_tasks, wall time per task over all hosts):")
    for line in noop[4]:
        print("    " + line)
    if base:
        print("  baseline %s: first converge %.1f s (changed=%d), no-op site.yml %.1f s"
              % (baseline, base[0][0], base[0][3], base[1][0]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="")
    parser.add_argument("fleets", nargs="*", default=["fleet5", "fleet50"])
    args = parser.parse_args()
    for fleet in args.fleets:
        bench(fleet, args.rounds, args.baseline)


if __name__ == "__main__":
    main()
