"""The network picture, looked at the way a person would: in a real headless Chromium.

playbooks/preflight.yml + playbooks/diagram.yml run for real (ansible-playbook, the action
plugin in the controller process, Graphviz `dot` for SVG/PNG) on a lab-shaped inventory whose
hosts are never contacted (the two plays contact none). Between them a play registers, on db1,
the route check `kubeflat.cluster.converge` returns for a host that lacks one of its three routes (the
module's RETURN shape: `plan` keep/add, `routes`), as the routes stage of a real run leaves it.
Chromium (Debian `chromium`) then loads the SVG inline in a page whose script measures every
text Chromium laid out (getBBox) and every edge's computed stroke; `--dump-dom` returns that.
Asserted: every node, its pod CIDR and every outside host are drawn with a visible size; the
missing route is drawn, red and dashed, labelled MISSING; present routes are green; a second
run changes nothing and starts no `dot`; check mode writes nothing.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NODES = {"cp1": ("10.79.0.11", "10.244.0.0/24"), "w1": ("10.79.0.21", "10.244.1.0/24"),
         "w2": ("10.79.0.22", "10.244.2.0/24")}
OUTSIDE = {"db1": "10.79.0.31", "lb1": "10.79.0.32"}
MISSING = ("db1", "10.244.2.0/24", "10.79.0.22")

pytestmark = pytest.mark.skipif(not (shutil.which("dot") and os.path.exists(CHROMIUM)),
                                reason="needs Debian graphviz and chromium (make setup)")


def _inventory(tmp: Path) -> Path:
    inv = tmp / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "group_vars" / "all" / "main.yml").write_text(
        "kubeflat_cluster_name: diagram\nkubeflat_distribution: none\n"
        "kubeflat_host_networks: [10.79.0.0/24]\nansible_connection: local\n")
    hosts = {"all": {"children": {
        "k8s_cluster": {"children": {
            "kube_control_plane": {"hosts": {"cp1": {"ansible_host": NODES["cp1"][0]}}},
            "kube_node": {"hosts": {n: {"ansible_host": NODES[n][0]} for n in ("w1", "w2")}}}},
        "k8s_outside": {"hosts": {n: {"ansible_host": a} for n, a in OUTSIDE.items()}}}}}
    (inv / "hosts.yml").write_text(json.dumps(hosts))
    return inv


def _playbook(tmp: Path) -> Path:
    """preflight, a play leaving db1's route check as the routes stage would, the diagram."""
    keep = [{"dest": NODES[n][1], "via": NODES[n][0], "node": n} for n in ("cp1", "w1")]
    add = [{"dest": MISSING[1], "via": MISSING[2], "node": "w2"}]
    check = {"changed": False, "pending": True, "routes": sorted(
        "%s via %s" % (r["dest"], r["via"]) for r in keep + add),
        "plan": {"keep": keep, "add": add, "replace": [], "delete": []},
        "report": ["db1: would add route %s via %s (node w2)" % MISSING[1:]]}
    play = tmp / "site.yml"
    play.write_text(json.dumps([
        {"ansible.builtin.import_playbook": str(REPO / "playbooks" / "preflight.yml")},
        {"name": "Routes as this run found them", "hosts": "db1", "gather_facts": False,
         "tasks": [{"name": "db1 lacks its route to w2", "ansible.builtin.set_fact": {
             "__outside_routes_plan": check}}]},
        {"ansible.builtin.import_playbook": str(REPO / "playbooks" / "diagram.yml")}]))
    return play


def _run(inv: Path, play: Path, render: Path, *extra: str, path_env: str | None = None):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_STDOUT_CALLBACK="default")
    if path_env is not None:
        env["PATH"] = path_env
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(play),
                           "-e", "kubeflat_render_dir=%s" % render, *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recap = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)", proc.stdout, re.M)
    return proc.stdout, {h: int(c) for h, _, c in recap}


PAGE = """<!doctype html><html><body>%s
<pre id="seen"></pre>
<script>
const svg = document.querySelector('svg');
const texts = [...svg.querySelectorAll('text')].map(t => {
  const b = t.getBBox(); return {text: t.textContent, w: b.width, h: b.height};});
const edges = [...svg.querySelectorAll('g.edge')].map(g => {
  const p = g.querySelector('path'); const s = getComputedStyle(p);
  return {id: g.id, cls: g.getAttribute('class'), stroke: s.stroke, dash: s.strokeDasharray,
          label: [...g.querySelectorAll('text')].map(t => t.textContent).join(' ')};});
const r = svg.getBoundingClientRect();
document.getElementById('seen').textContent = JSON.stringify(
  {texts, edges, width: r.width, height: r.height});
</script></body></html>"""


def _look(svg: Path, tmp: Path) -> dict:
    """What Chromium drew: texts with their laid-out size, edges with their computed style."""
    page = tmp / "look.html"
    page.write_text(PAGE % svg.read_text())
    profile = tempfile.mkdtemp(prefix="kubeflat-chromium-", dir=tmp)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=%s" % profile]
    out = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="seen">(.*?)</pre>', out.stdout, re.S)
    assert found and found.group(1), "Chromium drew nothing: %s" % out.stderr[-2000:]
    shot = tmp / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--screenshot=%s" % shot, "--window-size=2400,900",
                    svg.as_uri()], capture_output=True, timeout=120, check=True)
    seen = json.loads(html.unescape(found.group(1)))
    seen["screenshot"] = shot.read_bytes()
    return seen


def _visible(seen, needle):
    return [t for t in seen["texts"] if needle in t["text"] and t["w"] > 0 and t["h"] > 0]


def test_diagram_drawn_in_chromium(tmp_path):
    inv, play, render = _inventory(tmp_path), _playbook(tmp_path), tmp_path / "rendered"

    out, changed = _run(inv, play, render, "--check")
    assert "network diagram: %s" % (render / "network.svg") in out
    assert changed and max(changed.values()) == 1          # would draw, ...
    assert not render.exists() or not list(render.iterdir())   # ... but wrote nothing

    out, changed = _run(inv, play, render)
    assert "network diagram: %s" % (render / "network.svg") in out
    assert sum(changed.values()) == 1, out
    for suffix in ("dot", "svg", "png"):
        assert (render / ("network." + suffix)).stat().st_size > 0
    assert (render / "network.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "db1: missing %s via %s" % MISSING[1:] in out

    seen = _look(render / "network.svg", tmp_path)
    assert seen["width"] > 300 and seen["height"] > 100
    assert seen["screenshot"][:8] == b"\x89PNG\r\n\x1a\n" and len(seen["screenshot"]) > 20000
    for name, (address, cidr) in NODES.items():
        assert _visible(seen, name), name
        assert _visible(seen, address), address
        assert _visible(seen, "pods %s" % cidr), cidr
    for name, address in OUTSIDE.items():
        assert _visible(seen, name) and _visible(seen, address), name
    assert _visible(seen, "outside host")

    routes = {e["id"]: e for e in seen["edges"] if e["id"].startswith("route:")}
    missing = routes["route:%s:%s" % MISSING[:2]]
    assert "missing" in missing["cls"] and "MISSING" in missing["label"]
    assert missing["stroke"] == "rgb(211, 47, 47)" and missing["dash"] not in ("", "none")
    present = routes["route:db1:%s" % NODES["w1"][1]]
    assert "present" in present["cls"] and present["stroke"] == "rgb(46, 125, 50)"
    assert present["dash"] in ("", "none")
    # lb1 and the nodes were not checked in this run: drawn as the model expects them (grey).
    assert "expected" in routes["route:lb1:%s" % NODES["w2"][1]]["cls"]
    # static mode: each node routes to the two others; outside hosts to all three.
    assert len(routes) == 3 * 2 + 2 * 3

    # A second run: nothing changed, no `dot` started (PATH without graphviz would warn).
    mtimes = {p.name: p.stat().st_mtime_ns for p in render.iterdir()}
    bare = tmp_path / "bin"
    bare.mkdir()
    out, changed = _run(inv, play, render, path_env="%s:%s" % (bare, REPO / ".venv" / "bin"))
    assert sum(changed.values()) == 0, out
    assert "not found" not in out
    assert {p.name: p.stat().st_mtime_ns for p in render.iterdir()} == mtimes
