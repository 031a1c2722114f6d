"""kubeflat as the collection kubeflat.cluster, the way Ansible users install content.

For real, from outside the repository: `ansible-galaxy collection build` makes the tarball,
`ansible-galaxy collection install` puts it into an EMPTY temporary path, and
`ansible-playbook -i <inventory> kubeflat.cluster.site` runs the lab (inventories/lab, booted
by the lab package) with only that path and the dependency collections on
ANSIBLE_COLLECTIONS_PATH — so every module, filter, role and playbook comes from the installed
tarball, not from the clone. The run must end with the verify matrix all ok, and the next run
must change nothing, nor must tag runs of stages that check different hosts. `ansible-doc kubeflat.cluster.<module>` must show the installed docs.
"""
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from lab import Lab
from labrunner import REPO, VENV_BIN

INVENTORY = REPO / "inventories" / "lab"
DEPENDENCIES = ("ansible", "community", "kubernetes")   # the namespaces galaxy.yml depends on


def galaxy(*argv, cwd, env):
    return subprocess.run([str(VENV_BIN / "ansible-galaxy")] + list(argv), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(workdir, env): the tarball installed into an empty path, an ansible.cfg without any of
    the clone's paths, and the environment that sees only the installed collection."""
    work = tmp_path_factory.mktemp("collection")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", "/usr/bin:/bin"))
    built = galaxy("collection", "build", "--output-path", str(work), str(REPO), cwd=work, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    tarballs = list(work.glob("kubeflat-cluster-*.tar.gz"))
    assert len(tarballs) == 1, built.stdout
    with tarfile.open(tarballs[0]) as tar:
        names = set(tar.getnames())
    for wanted in ("MANIFEST.json", "meta/runtime.yml", "playbooks/site.yml",
                   "plugins/modules/converge.py", "plugins/module_utils/kubeflat_host.py",
                   "plugins/filter/kubeflat.py", "roles/outside_routes/tasks/main.yml"):
        assert wanted in names, wanted
    # The lab, the tests and the clone's own collections are not part of the content.
    assert not any(n.startswith(("lab/", "tests/unit/", "collections/", ".venv/")) for n in names)

    target = work / "installed"
    target.mkdir()
    assert not any(target.iterdir())
    done = galaxy("collection", "install", "--force", "--no-deps", "-p", str(target), str(tarballs[0]),
                  cwd=work, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((target / "ansible_collections/kubeflat/cluster/MANIFEST.json").read_text())
    assert manifest["collection_info"]["name"] == "cluster"

    # The dependency collections (installed by make setup) in their own path, without the
    # clone's kubeflat link beside them.
    deps = work / "deps" / "ansible_collections"
    deps.mkdir(parents=True)
    for namespace in DEPENDENCIES:
        (deps / namespace).symlink_to(REPO / "collections" / "ansible_collections" / namespace)
    cfg = (REPO / "ansible.cfg").read_text().splitlines()
    cfg = [line for line in cfg if not line.startswith(("roles_path", "collections_path"))]
    (work / "ansible.cfg").write_text("\n".join(cfg) + "\n")
    env.update({"ANSIBLE_CONFIG": str(work / "ansible.cfg"),
                "ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (target, deps.parent),
                "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
                "ANSIBLE_ROLES_PATH": str(work / "no-roles"),
                "ANSIBLE_NOCOLOR": "1"})
    shutil.copytree(INVENTORY, work / "inventory")
    return work, env


def test_ansible_doc_shows_the_installed_module(installed):
    work, env = installed
    doc = subprocess.run([str(VENV_BIN / "ansible-doc"), "kubeflat.cluster.converge"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert doc.returncode == 0, doc.stderr
    assert str(work / "installed") in doc.stdout      # the installed copy, not the clone
    assert "route" in doc.stdout and "check mode" in doc.stdout.lower()
    listed = galaxy("collection", "list", "kubeflat.cluster", cwd=work, env=env)
    assert str(REPO / "collections") not in listed.stdout, listed.stdout


@pytest.fixture(scope="module")
def lab():
    with Lab(INVENTORY) as lab:     # up, and down again even when a test fails
        yield lab


def play(lab, work, env, *args):
    """ansible-playbook kubeflat.cluster.site from the lab's controller namespace, in `work`."""
    run_env = lab.ansible_env()     # the lab's ssh settings; config and paths from `installed`
    run_env.update({k: v for k, v in env.items() if k.startswith("ANSIBLE_")})
    argv = lab.ctl_argv([str(VENV_BIN / "ansible-playbook"), "-i", str(work / "inventory"),
                         "kubeflat.cluster.site"] + list(args))
    return subprocess.run(argv, cwd=work, env=run_env, capture_output=True, text=True,
                          timeout=900, check=False)


def test_the_installed_collection_runs_the_lab_through_its_fqcn(installed, lab):
    work, env = installed
    first = play(lab, work, env)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert "kubeflat.cluster." in first.stdout        # the modules ran by their FQCN
    # The verify stage's matrix: every cell ok (5 hosts: 3 nodes x 6 targets).
    assert "18 of 18 cells ok" in first.stdout, first.stdout[-4000:]
    # The render dir of the copied inventory, not the clone's.
    assert (work / "inventory.rendered").is_dir()

    # Converged: the next run changes nothing (the diagram drew the first run's changes as
    # the hosts have them after it), nor do tag runs that check different hosts one after the
    # other (the diagram draws the hosts a run did not check as last seen).
    for args in (("--skip-tags", "verify"), ("--tags", "network"), ("--tags", "routes"),
                 ("--tags", "network")):
        again = play(lab, work, env, *args)
        assert again.returncode == 0, again.stdout[-6000:]
        recap = again.stdout[again.stdout.rindex("PLAY RECAP"):]
        changed = re.findall(r"changed=(\d+)", recap)
        assert changed and set(changed) == {"0"}, (args, recap, again.stdout[-3000:])
