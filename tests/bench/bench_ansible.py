#!/usr/bin/env python3
"""Benchmark: Ansible overhead of kubeflat runs against lab fleets (not a test).

For the fleet5 and fleet50 lab inventories it boots the lab, then times, from inside the lab's
controller namespace:
  1. a bare `ansible all -m ping` (the floor: connection + module round-trip),
  2. a no-op `site.yml` run (second run, everything already converged),
  3. a `--tags routes` run (the everyday reconfigure operation),
and prints them side by side. Usage: .venv/bin/python tests/bench/bench_ansible.py [fleet5 fleet50]
"""
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from lab.kubeflat_lab import Lab  # noqa: E402


def timed(argv, env):
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit("benchmark command failed: %s" % " ".join(argv))
    return elapsed


def bench(fleet):
    inventory = os.path.join(ROOT, "tests", "bench", "inventories", fleet)
    lab = Lab(inventory)
    start = time.monotonic()
    lab.up()
    up = time.monotonic() - start
    env = lab.ansible_env()
    playbook = lab.ctl_argv([os.path.join(ROOT, ".venv/bin/ansible-playbook"), "-i", inventory])
    try:
        rows = []
        # Warm-up: converge once so the timed site.yml run is a no-op run.
        timed(playbook + [os.path.join(ROOT, "site.yml"), "--skip-tags", "verify"], env)
        for label, argv in (
            ("ansible all -m ping", lab.ctl_argv([os.path.join(ROOT, ".venv/bin/ansible"), "all",
                                                  "-i", inventory, "-m", "ansible.builtin.ping"])),
            ("site.yml (no-op, all converged)", playbook + [os.path.join(ROOT, "site.yml"),
                                                           "--skip-tags", "verify"]),
            ("site.yml --tags routes", playbook + [os.path.join(ROOT, "site.yml"), "--tags", "routes"]),
        ):
            rows.append((label, timed(argv, env)))
    finally:
        lab.down()
    print("\n%s: %d hosts, lab up %.1f s" % (fleet, len(lab.hosts), up))
    for label, seconds in rows:
        print("  %-36s %6.1f s" % (label, seconds))


def main():
    fleets = sys.argv[1:] or ["fleet5", "fleet50"]
    for fleet in fleets:
        bench(fleet)


if __name__ == "__main__":
    main()
