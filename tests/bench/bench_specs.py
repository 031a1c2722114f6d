#!/usr/bin/env python3
"""Benchmark (not a test): render and validate 1,000 apps, cold and warm; a naive loop beside.

Run: .venv/bin/python tests/bench/bench_specs.py [--apps 1000] [--rounds 3] [--naive-apps 25]

Each round (--rounds, default 3), one after the other:
  1. pure rendering (render_apps + render_edge, in-process, no checker);
  2. the real role path, cold: `ansible-playbook playbooks/render.yml` with the generated
     catalog into an EMPTY render dir (no validation record), i.e. one kubeflat.cluster.render_specs
     call per part that renders, validates every file (kubernetes-validate --strict,
     envoy --mode validate) and writes it; then checks that every rendered file is recorded as
     validated by the configured checkers (the run must not have skipped any);
  3. the same playbook again, warm (nothing changed: changed=0 on every host);
  2-3 run for both ways of giving the catalog, alternating: as files (app_specs_apps_dir, one
     file per app, the way meant for large catalogs: only the controller-side code reads it)
     and as the variable app_specs_apps (`-e @apps.json`: ansible-playbook itself loads, tags
     and copies it on every run);
  4. the action plugin alone, in this process, without Ansible around it (the same code the
     task runs, apps part then edge part): cold into another empty dir, then warm; it reports
     how many files each checker validated, which the row asserts (all cold, none warm).
It prints min / median / max seconds and the median in ms per app for each, cold and warm
side by side, the load average before and after, and the task times Ansible reports for the
render tasks (profile_tasks) in the median warm run.

Once, at the end (--naive-apps 0 skips it): a naive loop, one ansible.builtin.template task
iteration per file (an indented-Jinja manifest and an Envoy config per app), rendering only,
NO validation, measured on --naive-apps apps and extrapolated linearly to --apps (the loop is
linear in files: each iteration is a separate template action with its own checksum/copy round
trip). Nothing here connects to any host: everything is delegated to localhost.
"""
import argparse
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, ".venv", "bin")
sys.path.insert(0, os.path.join(ROOT, "collections"))  # the collection, as make setup links it

# pylint: disable=wrong-import-position
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_checkers  # noqa: E402
from ansible_collections.kubeflat.cluster.plugins.action import render_specs  # noqa: E402  (the action plugin)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model  # noqa: E402
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_edge import render_edge  # noqa: E402
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps  # noqa: E402

NAIVE_TEMPLATE = """\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ item.name }}
  namespace: {{ item.namespace | default('apps') }}
  labels:
    app.kubernetes.io/name: {{ item.name }}
spec:
  replicas: {{ item.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ item.name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ item.name }}
    spec:
      containers:
        - name: app
          image: {{ item.image }}
          ports:
{% for p in item.ports %}
            - name: {{ p.name }}
              containerPort: {{ p.port }}
{% endfor %}
          env:
            - name: APP_CONFIG
              value: |
                {{ item.config | to_nice_yaml | indent(16) }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ item.name }}
spec:
  clusterIP: None
  selector:
    app.kubernetes.io/name: {{ item.name }}
  ports:
{% for p in item.ports %}
    - name: {{ p.name }}
      port: {{ p.port }}
{% endfor %}
"""

NAIVE_ENVOY = """\
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 9901}
static_resources:
  listeners:
{% for c in item.calls | default([]) %}
    - name: to_{{ c }}
      address:
        socket_address: {address: 127.0.0.1, port_value: {{ 15001 + loop.index0 }}}
{% endfor %}
"""

NAIVE_PLAY = """\
- name: Naive render, one template task iteration per file
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Render each manifest
      ansible.builtin.template:
        src: "{{ tpl_dir }}/app.yaml.j2"
        dest: "{{ out_dir }}/{{ item.name }}.yaml"
        mode: "0644"
      loop: "{{ apps }}"
    - name: Render each Envoy config
      ansible.builtin.template:
        src: "{{ tpl_dir }}/envoy.yaml.j2"
        dest: "{{ out_dir }}/{{ item.name }}-envoy.yaml"
        mode: "0644"
      loop: "{{ apps }}"
"""


def catalog(count):
    apps = []
    for i in range(count):
        app = {
            "name": "app%04d" % i,
            "namespace": "bench%d" % (i % 10),
            "image": "registry.example/app%04d:1.0.%d" % (i, i % 7),
            "replicas": 3,
            "ports": [{"name": "http", "port": 8080}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                          "limits": {"memory": "256Mi"}},
            "probes": {"readiness": {"path": "/ready"}, "liveness": {"path": "/healthz"}},
            "config": {"id": i, "feature": {"enabled": i % 2 == 0}},
        }
        if i + 1 < count:  # a chain: every app calls the next one (same namespace or not)
            app["calls"] = [{"app": "app%04d" % (i + 1), "namespace": "bench%d" % ((i + 1) % 10)}]
        if i % 10 == 0:
            app["memory_spread"] = {"deployments": 3, "step": "64Mi"}
        if i % 50 == 0:
            app["ingress"] = [{"host": "app%04d.example.com" % i, "path": "/"}]
        apps.append(app)
    return apps


def env():
    out = dict(os.environ)
    out.update({"PATH": BIN + os.pathsep + out.get("PATH", ""),
                "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
                "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, "collections"),
                "ANSIBLE_FORCE_COLOR": "0"})
    return out


def timed(argv, what):
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env(), cwd=ROOT)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit("%s failed:\n%s" % (what, (result.stdout + result.stderr)[-3000:]))
    return elapsed, result.stdout


RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", re.M)
TASK_TIME = re.compile(r"^(.*Render[^\n]*?) -+ ([0-9.]+)s$", re.M)
ANY_TASK_TIME = re.compile(r"^(\S[^\n]*?) -+ ([0-9.]+)s$", re.M)


def all_recorded(render_dir):
    """Every rendered file of both parts is in the validation record under a checker."""
    missing = []
    for part in ("apps", "edge"):
        with open(os.path.join(render_dir, ".kubeflat-%s.json" % part)) as fh:
            files = json.load(fh)
        with open(os.path.join(render_dir, kubeflat_checkers.record_name(part))) as fh:
            checks = json.load(fh)["checks"]
        for rel in files:
            kind = "manifests" if rel.startswith("specs/") else "envoy"
            if rel not in checks.get(kind, {}).get("files", {}):
                missing.append(rel)
    return missing


def action_run(dest, part, apps, model):
    """The action plugin's own work for one part, in this process (no Ansible task around it):
    the options the roles pass (role defaults for the rest), the real checkers."""
    args = {"dest": dest, "part": part, "apps": apps, "settings": {}, "model": model,
            "kubernetes_validate": os.path.join(BIN, "kubernetes-validate"),
            "envoy": os.path.join(BIN, "envoy"), "kube_version": "1.37.0"}
    if part == "edge":
        args["coredns"] = {}
    plugin = render_specs.ActionModule.__new__(render_specs.ActionModule)
    plugin._task = types.SimpleNamespace(args=args, check_mode=False, diff=False)
    plugin._connection = types.SimpleNamespace(transport="local")
    try:
        return plugin._run()
    except render_specs._Fail as exc:  # pylint: disable=protected-access
        sys.exit("action plugin failed: %s" % exc.result["msg"][:3000])


def action_both(dest, apps, model):
    gc.collect()  # start clean, as a freshly forked Ansible worker would
    start = time.perf_counter()
    validated = {"manifests": 0, "envoy": 0}
    files = 0
    for part in ("apps", "edge"):
        result = action_run(dest, part, apps, model)
        files += len(result["files"])
        for kind in validated:
            validated[kind] += result["validated"][kind]
    return time.perf_counter() - start, validated, files


def stats(values, n):
    med = statistics.median(values)
    return "%8.2f %8.2f %8.2f %9.2f" % (min(values), med, max(values), med * 1000.0 / n)


def naive_loop(work, apps, n):
    naive_apps = apps
    tpl_dir = os.path.join(work, "tpl")
    os.makedirs(tpl_dir)
    for name, text in (("app.yaml.j2", NAIVE_TEMPLATE), ("envoy.yaml.j2", NAIVE_ENVOY),
                       ("naive.yml", NAIVE_PLAY)):
        with open(os.path.join(tpl_dir, name), "w") as fh:
            fh.write(text)
    naive_vars = os.path.join(work, "naive.json")
    out_dir = os.path.join(work, "naive")
    os.makedirs(out_dir)
    with open(naive_vars, "w") as fh:
        json.dump({"apps": naive_apps, "tpl_dir": tpl_dir, "out_dir": out_dir}, fh)
    base = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
            os.path.join(tpl_dir, "naive.yml"),
            "-e", "ansible_python_interpreter=" + sys.executable]
    naive, _ = timed(base + ["-e", "@" + naive_vars], "naive loop")
    # An empty play's fixed cost, subtracted so only the per-file work is extrapolated.
    with open(os.path.join(tpl_dir, "empty.json"), "w") as fh:
        json.dump({"apps": [], "tpl_dir": tpl_dir, "out_dir": out_dir}, fh)
    fixed, _ = timed(base + ["-e", "@" + os.path.join(tpl_dir, "empty.json")],
                     "naive loop (empty)")
    per_app = max(naive - fixed, 0.0) / len(naive_apps)
    print("naive template loop, rendering only, no validation: %.2f s for %d apps (%d files), "
          "of which %.2f s fixed playbook cost; extrapolated linearly to %d apps: %.1f s = "
          "%.0f ms per app" % (naive, len(naive_apps), 2 * len(naive_apps), fixed, n,
                               fixed + per_app * n, (fixed + per_app * n) * 1000.0 / n))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--naive-apps", type=int, default=25)
    args = parser.parse_args()
    n = args.apps
    apps = catalog(n)
    model = build_model({"cluster_name": "bench", "distribution": "none",
                         "host_networks": ["10.77.0.0/24"]},
                        [{"name": "cp1", "address": "10.77.0.11",
                          "groups": ["kube_control_plane", "k8s_cluster"]},
                         {"name": "w1", "address": "10.77.0.21",
                          "groups": ["kube_node", "k8s_cluster"]}])
    work = tempfile.mkdtemp(prefix="kubeflat-bench-specs-")
    rows = {k: [] for k in ("pure", "cold", "warm", "cold var", "warm var", "action cold",
                            "action warm")}
    warm_tasks = []
    load_before = os.getloadavg()
    try:
        vars_file = os.path.join(work, "apps.json")
        with open(vars_file, "w") as fh:
            json.dump({"app_specs_apps": apps}, fh)
        apps_dir = os.path.join(work, "apps.d")
        for app in apps:   # one file per app, in a directory per namespace
            path = os.path.join(apps_dir, app["namespace"], app["name"] + ".yml")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                yaml.safe_dump(app, fh, sort_keys=False)
        # Rows "cold"/"warm": the catalog as files; "cold var"/"warm var": as the variable.
        forms = {"": ["-e", json.dumps({"app_specs_apps": []}),
                      "-e", "app_specs_apps_dir=" + apps_dir],
                 " var": ["-e", "@" + vars_file]}
        for rnd in range(args.rounds):
            start = time.perf_counter()
            files = render_apps(apps, {}, model)
            files.update(render_edge(apps, {}, {}, {}, model))
            rows["pure"].append(time.perf_counter() - start)

            order = sorted(forms) if rnd % 2 == 0 else sorted(forms, reverse=True)
            for form in order:
                render_dir = os.path.join(work, "rendered-%d%s" % (rnd, form.strip()))
                argv = [os.path.join(BIN, "ansible-playbook"), "-i", "inventories/lab",
                        "playbooks/render.yml"] + forms[form] + [
                            "-e", "kubeflat_render_dir=" + render_dir]
                cold, _ = timed(argv, "render.yml (cold%s)" % form)
                missing = all_recorded(render_dir)
                if missing:
                    sys.exit("cold run left %d files unvalidated, e.g. %s" % (len(missing),
                                                                               missing[:3]))
                warm, out = timed(argv, "render.yml (warm%s)" % form)
                changed = {h: int(c) for h, c in RECAP.findall(out) if int(c)}
                if changed:
                    sys.exit("warm run changed something: %s\n%s" % (changed, out[-2000:]))
                rows["cold" + form].append(cold)
                rows["warm" + form].append(warm)
                if not form:
                    warm_tasks.append((warm, TASK_TIME.findall(out),
                                       ANY_TASK_TIME.findall(out)))
                shutil.rmtree(render_dir, ignore_errors=True)

            direct = os.path.join(work, "direct-%d" % rnd)
            seconds, validated, count = action_both(direct, apps, model)
            if sum(validated.values()) != count:
                sys.exit("action cold validated %s of %d files" % (validated, count))
            rows["action cold"].append(seconds)
            seconds, validated, _ = action_both(direct, apps, model)
            if sum(validated.values()):
                sys.exit("action warm validated %s" % validated)
            rows["action warm"].append(seconds)
            shutil.rmtree(direct, ignore_errors=True)
            print("round %d: files cold %.1f s, warm %.2f s; variable cold %.1f s, warm %.2f s; "
                  "action cold %.1f s, warm %.2f s; load %s" % (
                      rnd + 1, rows["cold"][-1], rows["warm"][-1], rows["cold var"][-1],
                      rows["warm var"][-1], rows["action cold"][-1], rows["action warm"][-1],
                      " ".join("%.1f" % x for x in os.getloadavg())), flush=True)
        load_after = os.getloadavg()

        print("\nkubeflat spec rendering benchmark: %d apps (%d files), %d rounds, %d CPUs, "
              "load average %s before, %s after" % (
                  n, len(files), args.rounds, os.cpu_count() or 1,
                  "/".join("%.1f" % x for x in load_before),
                  "/".join("%.1f" % x for x in load_after)))
        print("%-60s %8s %8s %8s %9s" % ("path", "min s", "median", "max s", "ms/app"))
        print("%-60s %s" % ("pure render (module_utils, in-process, no checker)",
                            stats(rows["pure"], n)))
        for form, label in (("", "files"), (" var", "variable")):
            print("%-60s %s" % ("render.yml cold, catalog as %s: render+validate+write"
                                % label, stats(rows["cold" + form], n)))
            print("%-60s %s" % ("render.yml warm, catalog as %s: changed=0" % label,
                                stats(rows["warm" + form], n)))
        for label, key in (("action plugin alone, cold (both parts)", "action cold"),
                           ("action plugin alone, warm (both parts)", "action warm")):
            print("%-60s %s" % (label, stats(rows[key], n)))
        print("\n%-26s %12s %12s" % ("ms per app (median)", "cold", "warm"))
        for label, cold_key, warm_key in (("render.yml, catalog files", "cold", "warm"),
                                          ("render.yml, -e catalog", "cold var", "warm var"),
                                          ("action plugin alone", "action cold", "action warm")):
            print("%-26s %12.2f %12.2f" % (label, statistics.median(rows[cold_key]) * 1000.0 / n,
                                           statistics.median(rows[warm_key]) * 1000.0 / n))
        median_warm = sorted(warm_tasks)[len(warm_tasks) // 2]
        print("\nrender tasks in the median warm render.yml run, catalog files (%.2f s in all), as "
              "profile_tasks reports them:" % median_warm[0])
        for name, seconds in median_warm[1]:
            print("  %6ss  %s" % (seconds, name.strip()))
        # Every task of that run: what is left outside them is ansible-playbook's own start-up
        # (reading the -e catalog file, the inventory, the playbooks) and its play setup.
        every = median_warm[2]
        print("every task of that run (profile_tasks): %.2f s of the %.2f s; the rest is "
              "ansible-playbook itself" % (sum(float(t) for _n, t in every), median_warm[0]))
        for name, seconds in every:
            print("  %6ss  %s" % (seconds, name.strip()))
        # The floor under those rows: ansible-playbook with the same inventory and the same
        # catalog arguments running one play of one no-op task on every host.
        empty = os.path.join(work, "empty.yml")
        with open(empty, "w") as fh:
            fh.write("- name: Nothing\n  hosts: all\n  gather_facts: false\n  tasks:\n"
                     "    - name: Nothing\n      ansible.builtin.meta: noop\n")
        for form, label in (("", "catalog files"), (" var", "-e catalog")):
            floor, _ = timed([os.path.join(BIN, "ansible-playbook"), "-i", "inventories/lab",
                              empty] + forms[form], "empty play")
            print("ansible-playbook alone (same inventory, %s, one no-op task): "
                  "%.2f s = %.2f ms per app" % (label, floor, floor * 1000.0 / n))
        if args.naive_apps:
            print()
            naive_loop(work, apps[:args.naive_apps], n)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
