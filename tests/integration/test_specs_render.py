"""`--tags specs` on the lab inventory: render, validate with the real checkers, idempotence.

Rendering runs on the controller only (the preflight model and the render module are delegated
to localhost and nothing connects to a node), so these runs need no booted lab: they use the
lab inventory's catalog and write into a temporary kubeflat_render_dir.

Asserts:
* every rendered manifest passes `kubernetes-validate -k 1.37.0 --strict`, every rendered Envoy
  config passes the real `envoy --mode validate` (checked here independently of the role);
* a second run reports changed=0 on every host (ansible-runner stats) and leaves every file
  byte-identical; the first run validated every file, the second none (validation record);
* `--check --diff` with a changed catalog reports the change and writes nothing;
* a bad catalog fails with a message naming the variable, before anything is written (a
  catalog of the wrong type already in the preflight);
* a catalog with Jinja in it is templated as Ansible would (the render tasks read the catalog
  from their variables, apps_var, instead of taking it as a task argument);
* removing an app removes its files; `--tags envoy` and `--tags deploy` each work alone.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
import types

import ansible_runner
import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, ".venv", "bin")
INVENTORY = os.path.join(ROOT, "inventories", "lab")
with open(os.path.join(INVENTORY, "group_vars", "all", "apps.yml")) as _fh:
    LAB_APPS = yaml.safe_load(_fh)["app_specs_apps"]


def run(render_dir, tags="specs", extravars=None, check=False, diff=False):
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    env = {
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, "collections"),
        "ANSIBLE_FORCE_COLOR": "0",
    }
    pdd = tempfile.mkdtemp(prefix="kf-runner-specs-")
    try:
        runner = ansible_runner.run(
            private_data_dir=pdd, project_dir=ROOT, playbook=os.path.join(ROOT, "site.yml"),
            inventory=INVENTORY, tags=tags, cmdline=" ".join(cmdline) or None,
            extravars=dict({"kubeflat_render_dir": render_dir}, **(extravars or {})),
            envvars=env, quiet=True, timeout=300)
        with open(os.path.join(runner.config.artifact_dir, "stdout"), errors="replace") as fh:
            text = fh.read()
        # Read everything from the artifacts before they are removed below.
        renders = [e["event_data"]["res"] for e in runner.events
                   if e.get("event") == "runner_on_ok" and
                   e.get("event_data", {}).get("task_action", "").endswith(
                       "kubeflat.cluster.render_specs")]
        return types.SimpleNamespace(rc=runner.rc, stats=runner.stats or {}, text=text,
                                     renders=renders)
    finally:
        shutil.rmtree(pdd, ignore_errors=True)


def changed_hosts(runner):
    return {h: n for h, n in runner.stats.get("changed", {}).items() if n}


def snapshot(directory):
    out = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, directory)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def rendered():
    directory = tempfile.mkdtemp(prefix="kubeflat-render-")
    try:
        first = run(directory)
        assert first.rc == 0, first.text[-4000:]
        yield directory, first
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def files_under(directory, sub):
    return sorted(os.path.join(base, name) for base, _, names in
                  os.walk(os.path.join(directory, sub)) for name in names)


def test_first_run_renders_the_lab_catalog(rendered):
    directory, first = rendered
    assert changed_hosts(first)  # it wrote something
    rel = sorted(snapshot(directory))
    assert "specs/shop/web.yaml" in rel and "specs/shop/catalog.yaml" in rel
    assert "envoy/sidecars/shop/web.yaml" in rel and "envoy/outside-balancer.yaml" in rel
    assert "specs/kube-system/coredns.yaml" in rel
    assert "nothing was applied" in first.text


def test_every_manifest_passes_kubernetes_validate_strict(rendered):
    directory, _ = rendered
    manifests = files_under(directory, "specs")
    assert len(manifests) >= 6
    result = subprocess.run([os.path.join(BIN, "kubernetes-validate"), "-k", "1.37.0",
                             "--strict"] + manifests, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # One "passed" line per resource: every document was checked, none skipped.
    resources = sum(len([d for d in yaml.safe_load_all(open(m)) if d]) for m in manifests)
    assert result.stdout.count(" passed ") == resources


def test_every_envoy_config_passes_the_real_envoy(rendered):
    directory, _ = rendered
    configs = files_under(directory, "envoy")
    assert len(configs) == 4  # 2 sidecars, the ingress, the outside balancer
    for path in configs:
        result = subprocess.run([os.path.join(BIN, "envoy"), "--mode", "validate",
                                 "--disable-hot-restart", "-c", path],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, path + "\n" + result.stdout + result.stderr
        assert "OK" in result.stdout


def test_second_run_changes_nothing_and_is_byte_identical(rendered):
    directory, first = rendered
    before = snapshot(directory)
    second = run(directory)
    assert second.rc == 0, second.text[-4000:]
    assert changed_hosts(second) == {}, second.text[-4000:]
    assert snapshot(directory) == before
    # The first run validated every file of both parts; the second trusted the record.
    assert len(first.renders) == len(second.renders) == 2
    for cold, warm in zip(first.renders, second.renders):
        kinds = {"manifests": len([f for f in cold["files"] if f.startswith("specs/")]),
                 "envoy": len([f for f in cold["files"] if f.startswith("envoy/")])}
        assert cold["validated"] == kinds and warm["validated"] == {"manifests": 0, "envoy": 0}
        assert warm["validated_before"] == kinds and warm["files"] == cold["files"]


def test_check_diff_shows_a_change_and_writes_nothing(rendered):
    directory, _ = rendered
    before = snapshot(directory)
    apps = [dict(a) for a in LAB_APPS]
    apps[2] = dict(apps[2], replicas=4)  # prices
    result = run(directory, tags="deploy", extravars={"app_specs_apps": apps}, check=True,
                 diff=True)
    assert result.rc == 0, result.text[-4000:]
    assert changed_hosts(result)
    assert "--- before: specs/shop/prices.yaml" in result.text
    assert "+  replicas: 4" in result.text
    assert snapshot(directory) == before


def test_bad_catalog_fails_naming_the_variable_and_writes_nothing(rendered):
    directory, _ = rendered
    before = snapshot(directory)
    apps = [dict(a) for a in LAB_APPS]
    apps[0] = dict(apps[0], calls=["inventory"])
    result = run(directory, tags="deploy", extravars={"app_specs_apps": apps})
    assert result.rc != 0
    assert "app_specs_apps[web].calls[0]" in result.text
    assert "no app inventory in namespace shop" in result.text
    assert snapshot(directory) == before


def test_wrong_type_catalog_is_refused_in_the_preflight_naming_it(rendered):
    directory, _ = rendered
    before = snapshot(directory)
    result = run(directory, tags="deploy", extravars={"app_specs_apps": {"web": {"image": "x"}}})
    assert result.rc != 0
    assert "kubeflat inputs are invalid: app_specs_apps={'web': {'image': 'x'}}" in result.text
    # Refused by the preflight: no render task started.
    assert "Render and validate" not in result.text and not result.renders
    assert snapshot(directory) == before


def test_jinja_in_the_catalog_is_templated_like_a_task_argument(rendered):
    directory, _ = rendered
    before = snapshot(directory)
    apps = [dict(a) for a in LAB_APPS]
    image = apps[2]["image"]
    registry, _slash, rest = image.partition("/")
    apps[2] = dict(apps[2], image="{{ kf_test_registry }}/" + rest)  # prices
    # Same image as before: nothing changes, in either part.
    same = run(directory, tags="deploy", extravars={"app_specs_apps": apps,
                                                   "kf_test_registry": registry})
    assert same.rc == 0, same.text[-4000:]
    assert changed_hosts(same) == {}, same.text[-4000:]
    # Another registry: the rendered Deployment shows it (check mode, nothing written).
    other = run(directory, tags="deploy", check=True, diff=True,
                extravars={"app_specs_apps": apps, "kf_test_registry": "mirror.example"})
    assert other.rc == 0, other.text[-4000:]
    assert "+++ after: specs/shop/prices.yaml" in other.text, other.text[-4000:]
    assert "image: mirror.example/" + rest in other.text, other.text[-4000:]
    assert snapshot(directory) == before


def test_missing_checker_is_named_and_nothing_is_written(rendered):
    directory, _ = rendered
    before = snapshot(directory)
    apps = [dict(a) for a in LAB_APPS]
    apps[2] = dict(apps[2], replicas=5)
    result = run(directory, tags="deploy", extravars={"app_specs_apps": apps,
                                                      "app_specs_tools_dir": "/nonexistent"})
    assert result.rc != 0
    assert "kubernetes-validate not found at /nonexistent/kubernetes-validate" in result.text
    assert snapshot(directory) == before


def test_tags_run_alone_and_removed_apps_are_pruned():
    directory = tempfile.mkdtemp(prefix="kubeflat-render-")
    try:
        edge = run(directory, tags="envoy")
        assert edge.rc == 0, edge.text[-4000:]
        # site.yml also draws the network diagram (network.dot/.png/.svg, and remembers each
        # host's route check in .network.routes.json) into the render dir
        assert sorted(r for r in snapshot(directory)
                      if not r.lstrip(".").startswith("network.")) == [
            ".kubeflat-edge.json", ".kubeflat-edge.validated.json", "envoy/ingress.yaml",
            "envoy/outside-balancer.yaml",
            "specs/kube-system/coredns.yaml", "specs/kubeflat-ingress/envoy-ingress.yaml"]
        deploy = run(directory, tags="deploy")
        assert deploy.rc == 0, deploy.text[-4000:]
        assert "specs/shop/web.yaml" in snapshot(directory)
        smaller = run(directory, tags="deploy",
                      extravars={"app_specs_apps": [a for a in LAB_APPS if a["name"] != "web"]})
        assert smaller.rc == 0 and changed_hosts(smaller)
        rel = snapshot(directory)
        assert "specs/shop/web.yaml" not in rel and "envoy/sidecars/shop/web.yaml" not in rel
        assert "envoy/ingress.yaml" in rel  # the other part's files are left alone
    finally:
        shutil.rmtree(directory, ignore_errors=True)
