#!/usr/bin/env python3
"""Benchmark (not a test): render and validate 1,000 apps; compare with a naive template loop.

Run: .venv/bin/python tests/bench/bench_specs.py [--apps 1000] [--naive-apps 25]

Prints, per app:
  1. pure rendering (kubeflat_specs.render_apps + render_edge, in-process);
  2. the real role path: `ansible-playbook playbooks/render.yml` with the generated catalog,
     i.e. one kubeflat_render_specs call per part that renders, validates every new file with
     kubernetes-validate --strict and envoy --mode validate, and writes it (cold run);
  3. the same playbook again (warm run: nothing changed, nothing validated, changed=0);
  4. a naive loop: one ansible.builtin.template task iteration per file (an indented-Jinja
     manifest and an Envoy config per app), rendering only, NO validation. It is measured on
     --naive-apps apps and extrapolated linearly to --apps (the loop is linear in files: each
     iteration is a separate template action with its own checksum/copy round trip).
Nothing here connects to any host: everything is delegated to localhost.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, ".venv", "bin")
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))

from kubeflat_model import build_model  # noqa: E402
from kubeflat_specs import render_apps, render_edge  # noqa: E402

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--naive-apps", type=int, default=25)
    args = parser.parse_args()
    apps = catalog(args.apps)
    model = build_model({"cluster_name": "bench", "distribution": "none",
                         "host_networks": ["10.77.0.0/24"]},
                        [{"name": "cp1", "address": "10.77.0.11",
                          "groups": ["kube_control_plane", "k8s_cluster"]},
                         {"name": "w1", "address": "10.77.0.21",
                          "groups": ["kube_node", "k8s_cluster"]}])
    work = tempfile.mkdtemp(prefix="kubeflat-bench-specs-")
    try:
        start = time.perf_counter()
        files = render_apps(apps, {}, model)
        files.update(render_edge(apps, {}, {}, {}, model))
        pure = time.perf_counter() - start

        vars_file = os.path.join(work, "apps.json")
        with open(vars_file, "w") as fh:
            json.dump({"app_specs_apps": apps}, fh)
        render_dir = os.path.join(work, "rendered")
        argv = [os.path.join(BIN, "ansible-playbook"), "-i", "inventories/lab",
                "playbooks/render.yml", "-e", "@" + vars_file,
                "-e", "kubeflat_render_dir=" + render_dir]
        cold, _ = timed(argv, "render.yml (cold)")
        warm, out = timed(argv, "render.yml (warm)")
        if "changed=1" in out or "changed=2" in out:
            sys.exit("warm run changed something:\n" + out[-2000:])
        written = sum(len(f) for _, _, f in os.walk(render_dir))

        naive_apps = apps[:args.naive_apps]
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
        naive, _ = timed([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c",
                          "local", os.path.join(tpl_dir, "naive.yml"), "-e", "@" + naive_vars,
                          "-e", "ansible_python_interpreter=" + sys.executable],
                         "naive loop")
        # An empty play's fixed cost, subtracted so only the per-file work is extrapolated.
        with open(os.path.join(tpl_dir, "empty.json"), "w") as fh:
            json.dump({"apps": [], "tpl_dir": tpl_dir, "out_dir": out_dir}, fh)
        fixed, _ = timed([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c",
                          "local", os.path.join(tpl_dir, "naive.yml"), "-e",
                          "@" + os.path.join(tpl_dir, "empty.json"), "-e",
                          "ansible_python_interpreter=" + sys.executable], "naive loop (empty)")
        per_app_naive = max(naive - fixed, 0.0) / len(naive_apps)

        n = args.apps
        print("kubeflat spec rendering benchmark: %d apps (%d files, %d written by the role), "
              "%d CPUs" % (n, len(files), written, os.cpu_count() or 1))
        print("%-58s %10s %12s" % ("path", "total s", "ms per app"))
        rows = [
            ("pure render (module_utils, in-process)", pure),
            ("role, cold: render + kubernetes-validate + envoy validate", cold),
            ("role, warm: re-render, nothing changed (changed=0)", warm),
            ("naive template loop, rendering only (extrapolated)", fixed + per_app_naive * n),
        ]
        for label, seconds in rows:
            print("%-58s %10.2f %12.2f" % (label, seconds, seconds * 1000.0 / n))
        print("naive loop measured on %d apps (%d files): %.2f s, of which %.2f s fixed "
              "playbook cost; extrapolated linearly to %d apps."
              % (len(naive_apps), 2 * len(naive_apps), naive, fixed, n))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
