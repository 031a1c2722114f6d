"""`--tags deploy -e app_specs_restart=<app>` on the controller (no host is contacted): the named
app's pod template gets kubectl.kubernetes.io/restartedAt, the record keeps it, a second run
without the flag is byte-identical, --check --diff shows the change and writes nothing, and an
unknown app is refused naming the variable. Rendered into a temporary render dir."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"


def deploy(render_dir, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
    argv = [str(PLAYBOOK), "-i", str(REPO / "inventories" / "lab"), str(REPO / "site.yml"),
            "--tags", "deploy", "-e", "kubeflat_render_dir=%s" % render_dir, *args]
    return subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True, timeout=600)


def files(render_dir):
    return {p.relative_to(render_dir).as_posix(): p.read_text()
            for p in Path(render_dir).rglob("*.yaml")}


def test_restart_now_then_nothing_rolls_again(tmp_path):
    out = tmp_path / "rendered"
    assert deploy(out).returncode == 0
    plain = files(out)
    assert not any("restartedAt" in t for t in plain.values())

    run = deploy(out, "-e", "app_specs_restart=web")
    assert run.returncode == 0, run.stdout[-3000:]
    restarted = files(out)
    assert "kubectl.kubernetes.io/restartedAt:" in restarted["specs/shop/web.yaml"]
    assert {k: v for k, v in restarted.items() if k != "specs/shop/web.yaml"} == \
        {k: v for k, v in plain.items() if k != "specs/shop/web.yaml"}
    assert (out / "app-restarts.yml").read_text().splitlines()[-1].startswith("web: '")

    again = deploy(out)
    assert again.returncode == 0 and files(out) == restarted
    assert "changed=1" not in again.stdout

    check = deploy(out, "--check", "--diff", "-e", "app_specs_restart=catalog")
    assert check.returncode == 0
    assert "+        kubectl.kubernetes.io/restartedAt:" in check.stdout
    assert files(out) == restarted and "catalog" not in (out / "app-restarts.yml").read_text()

    bad = deploy(out, "-e", "app_specs_restart=web,nosuch")
    assert bad.returncode != 0
    assert "app_specs_restart='nosuch': no such app in app_specs_apps" in bad.stdout
    assert files(out) == restarted
