"""Unit tests for plugins/plugin_utils/kubeflat_checkers.py and the validation flow of the
kubeflat.cluster.render_specs action plugin, with the real checkers (.venv/bin/kubernetes-validate,
.venv/bin/envoy): what they refuse stays refused, in-process or not, cold or after a record."""
import os
import shutil
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_checkers as checkers
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, ".venv", "bin")
KUBE = os.path.join(BIN, "kubernetes-validate")
ENVOY = os.path.join(BIN, "envoy")
from ansible_collections.kubeflat.cluster.plugins.action import render_specs as action

GOOD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: 'example/web:1'}]
"""
UNKNOWN_FIELD = GOOD.replace("replicas: 2", "replicas: 2\n  replicaz: 2")   # strict refuses
WRONG_TYPE = GOOD.replace("replicas: 2", "replicas: two")
NO_SCHEMA = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n"
SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: None\n" \
          "  ports: [{name: http, port: 8080}]\n"
ENVOY_GOOD = """\
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
static_resources:
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
"""
ENVOY_BAD_DURATION = ENVOY_GOOD.replace("connect_timeout: 1s", "connect_timeout: soon")
ENVOY_UNKNOWN_FIELD = ENVOY_GOOD.replace("  - name: backend", "  - name: backend\n    colour: blue")


def kube():
    return checkers.KubeValidator("1.37.0", strict=True)


def cli(*texts, tmp):
    """Verdict of the real kubernetes-validate CLI on each text: (rc, output)."""
    out = []
    for i, text in enumerate(texts):
        path = os.path.join(tmp, "doc%d.yaml" % i)
        with open(path, "w") as fh:
            fh.write(text)
        result = subprocess.run([KUBE, "-k", "1.37.0", "--strict", "--quiet", path],
                                capture_output=True, text=True, timeout=120)
        out.append((result.returncode, result.stdout + result.stderr))
    return out


# --- kubernetes-validate in-process == the CLI ---------------------------------------------

def test_in_process_kubernetes_validate_agrees_with_the_cli(tmp_path):
    texts = [GOOD, UNKNOWN_FIELD, WRONG_TYPE, SERVICE, GOOD + "---\n" + WRONG_TYPE]
    verdicts = cli(*texts, tmp=str(tmp_path))
    validator = kube()
    for text, (rc, output) in zip(texts, verdicts):
        errors = validator.check("x.yaml", text)
        assert bool(errors) == (rc != 0), (text, errors, output)
        for line in errors:  # the same message after the file name
            assert line.split("x.yaml", 1)[1] in output.replace(
                os.path.join(str(tmp_path), "doc%d.yaml" % texts.index(text)), "")
    assert verdicts[0][0] == 0 and verdicts[1][0] != 0 and verdicts[2][0] != 0


def test_in_process_refuses_what_strict_refuses():
    validator = kube()
    assert validator.check("good.yaml", GOOD) == []
    [unknown] = validator.check("bad.yaml", UNKNOWN_FIELD)
    assert "bad.yaml did not validate for resource deployment/web" in unknown
    assert "replicaz" in unknown
    [wrong] = validator.check("bad.yaml", WRONG_TYPE)
    assert "spec.replicas" in wrong and "'two' is not of type 'integer'" in wrong
    # a multi-document file: every document is checked, not only the first
    assert len(validator.check("two.yaml", GOOD + "---\n" + WRONG_TYPE)) == 1


def test_a_kind_without_schema_is_refused_although_the_cli_only_warns(tmp_path):
    [(rc, output)] = cli(NO_SCHEMA, tmp=str(tmp_path))
    assert rc == 0 and "WARN" in output  # the CLI lets it through unchecked
    [error] = kube().check("gadget.yaml", NO_SCHEMA)
    assert "no schema for kind Gadget" in error and "would not be checked" in error


def test_unparsable_yaml_and_missing_fields_are_refused():
    assert "couldn't parse YAML" in kube().check("broken.yaml", "a: [1, 2\n")[0]
    assert "could not be validated" in kube().check("nokind.yaml", "apiVersion: v1\n")[0]


def test_unsupported_kubernetes_version_is_named():
    with pytest.raises(checkers.CheckerError, match="does not support kubernetes version 9.99"):
        checkers.KubeValidator("9.99.0")


def test_cli_fallback_refuses_too():
    assert checkers.check_manifests_cli(KUBE, "1.37.0", {"a.yaml": GOOD, "b.yaml": SERVICE}) == []
    [error] = checkers.check_manifests_cli(KUBE, "1.37.0", {"a.yaml": GOOD, "b.yaml": WRONG_TYPE},
                                           jobs=1)
    assert "b.yaml did not validate" in error


def test_the_venv_scripts_are_recognised_as_this_pythons(tmp_path):
    assert checkers.same_python_script(KUBE, "kubernetes_validate.__main__")
    assert checkers.same_python_script(ENVOY, "envoy._main")
    assert not checkers.same_python_script(ENVOY, "kubernetes_validate.__main__")
    other = tmp_path / "kubernetes-validate"
    other.write_text("#!/usr/bin/python3\nfrom kubernetes_validate.__main__ import main\n")
    assert not checkers.same_python_script(str(other), "kubernetes_validate.__main__")
    assert not checkers.same_python_script(str(tmp_path / "missing"), "x")


# --- envoy ------------------------------------------------------------------------------------

def envoy_check(items):
    binary = checkers.envoy_binary(ENVOY)
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "kf-envoy-%d" % os.getpid())
    os.makedirs(tmp, exist_ok=True)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = checkers.start_envoy_checks(binary, items, pool, tmp)
            return started, checkers.envoy_errors(started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_envoy_binary_is_the_bundled_binary_and_the_key_follows_it(tmp_path):
    binary = checkers.envoy_binary(ENVOY)
    assert binary != ENVOY and os.path.basename(binary) == "envoy"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    wrapped = subprocess.run([ENVOY, "--version"], capture_output=True, text=True, timeout=60)
    # the same build (the output starts with argv[0], which differs)
    assert version.stdout.split("version:")[1] == wrapped.stdout.split("version:")[1]
    assert "/1.40." in version.stdout
    fake = tmp_path / "envoy"
    fake.write_text("#!/bin/sh\n")
    before = checkers.envoy_key(str(fake))
    os.utime(str(fake), ns=(1, 1))
    assert checkers.envoy_key(str(fake)) != before  # another binary: not the same checker
    assert checkers.envoy_binary(str(fake)) == str(fake)


def test_envoy_passes_good_configs_and_validates_identical_ones_once():
    started, errors = envoy_check({"a.yaml": ENVOY_GOOD, "b.yaml": ENVOY_GOOD})
    assert errors == []
    assert [rels for rels, _ in started] == [["a.yaml", "b.yaml"]]


def test_hand_written_configs_are_validated_alone():
    # not written as kubeflat writes YAML (flow style): never merged into a batch
    started, errors = envoy_check({"ok.yaml": ENVOY_GOOD, "late.yaml": ENVOY_BAD_DURATION})
    assert sorted(rels[0] for rels, _ in errors) == ["late.yaml"]
    stats = checkers.envoy_stats(started)
    assert stats["batched"] == 0 and stats["processes"] == stats["configs"] == 2


def test_envoy_refuses_bad_configs_naming_the_file():
    _, errors = envoy_check({"ok.yaml": ENVOY_GOOD, "late.yaml": ENVOY_BAD_DURATION,
                             "colour.yaml": ENVOY_UNKNOWN_FIELD})
    assert sorted(rels[0] for rels, _ in errors) == ["colour.yaml", "late.yaml"]
    text = dict((rels[0], out) for rels, out in errors)
    assert "colour" in text["colour.yaml"]


# --- the record ---------------------------------------------------------------------------

def test_record_trusts_only_the_same_bytes_from_the_same_checker():
    sha = checkers.digest(GOOD)
    record = checkers.load_record(checkers.dump_record({"manifests": ("kv 1", {"a": sha}),
                                                        "envoy": (None, {"b": sha})}))
    assert checkers.trusted(record, "manifests", "kv 1", "a", sha)
    assert not checkers.trusted(record, "manifests", "kv 2", "a", sha)      # other checker
    assert not checkers.trusted(record, "manifests", "kv 1", "a", checkers.digest(WRONG_TYPE))
    assert not checkers.trusted(record, "manifests", "kv 1", "other", sha)  # other path
    assert not checkers.trusted(record, "envoy", None, "b", sha)            # not configured
    for junk in ("", "{", "[]", '{"format": 99, "checks": {}}', '{"format": 1, "checks": 3}'):
        assert checkers.load_record(junk) == {}
        assert checkers.load_render_memo(junk) == (None, {})


def test_code_and_inputs_keys_change_with_what_the_render_depends_on(tmp_path):
    (tmp_path / "kubeflat_x.py").write_text("A = 1\n")
    (tmp_path / "other.py").write_text("B = 1\n")
    first = checkers.code_key(str(tmp_path))
    (tmp_path / "other.py").write_text("B = 2\n")  # not a kubeflat module
    assert checkers.code_key(str(tmp_path)) == first
    (tmp_path / "kubeflat_x.py").write_text("A = 2\n")
    assert checkers.code_key(str(tmp_path)) != first
    assert checkers.inputs_key("c", {"a": [1]}) == checkers.inputs_key("c", {"a": [1]})
    assert checkers.inputs_key("c", {"a": [1]}) != checkers.inputs_key("c", {"a": [2]})
    assert checkers.inputs_key("c", {"a": [1]}) != checkers.inputs_key("d", {"a": [1]})


def test_unchanged_on_disk_reads_the_bytes(tmp_path):
    (tmp_path / "f").write_text("one")
    files = {"f": checkers.digest("one")}
    assert checkers.unchanged_on_disk(str(tmp_path), files)
    stat = os.stat(str(tmp_path / "f"))
    (tmp_path / "f").write_text("two")
    os.utime(str(tmp_path / "f"), ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size+mtime
    assert not checkers.unchanged_on_disk(str(tmp_path), files)
    assert not checkers.unchanged_on_disk(str(tmp_path), {"gone": files["f"]})


# --- the action plugin's flow, with the real checkers ----------------------------------------

def fake_render(apps, settings, model, emit=None):  # pylint: disable=unused-argument
    """Stands in for kubeflat_specs.render_apps: the files come from the settings, so the
    inputs (and the render memo's key) change whenever the files do."""
    del apps, model
    return dict(settings["files"])


def run_action(dest, files, check_mode=False, diff=False, kube=KUBE, envoy=ENVOY,
               kube_version="1.37.0"):
    module = action.ActionModule.__new__(action.ActionModule)
    module._task = types.SimpleNamespace(
        args={"dest": str(dest), "part": "apps", "apps": [], "settings": {"files": files},
              "model": {"cluster_name": "t"}, "kubernetes_validate": kube, "envoy": envoy,
              "kube_version": kube_version},
        check_mode=check_mode, diff=diff)
    module._connection = types.SimpleNamespace(transport="local")
    try:
        return module._run()
    except action._Fail as exc:
        return exc.result


def snapshot(directory):
    out = {}
    for base, _, names in os.walk(str(directory)):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, str(directory))] = fh.read()
    return out


FILES = {"specs/shop/web.yaml": GOOD, "specs/shop/svc.yaml": SERVICE,
         "envoy/sidecars/shop/web.yaml": ENVOY_GOOD}


@pytest.fixture
def flow(monkeypatch, tmp_path):
    monkeypatch.setattr(action, "render_apps", fake_render)
    return tmp_path / "rendered"


def test_cold_validates_everything_then_a_rerun_trusts_the_record(flow):
    first = run_action(flow, FILES)
    assert not first.get("failed"), first
    assert first["validated"] == {"manifests": 2, "envoy": 1} and first["changed"]
    assert os.path.isfile(str(flow / ".kubeflat-apps.validated.json"))
    second = run_action(flow, FILES)
    assert second["validated"] == {"manifests": 0, "envoy": 0} and not second["changed"]
    assert second["validated_before"] == {"manifests": 2, "envoy": 1}
    assert second["files"] == first["files"] and second["manifests"] == first["manifests"]


@pytest.mark.parametrize("rel,bad,checker", [
    ("specs/shop/web.yaml", WRONG_TYPE, "kubernetes-validate --strict refused"),
    ("envoy/sidecars/shop/web.yaml", ENVOY_BAD_DURATION, "envoy --mode validate refused"),
])
def test_bad_content_is_refused_cold_and_after_a_record_exists(flow, rel, bad, checker):
    cold = run_action(flow, dict(FILES, **{rel: bad}))
    assert cold["failed"] and checker in cold["msg"] and rel in cold["msg"]
    assert not os.path.exists(str(flow))  # nothing written, not even the directory
    assert not run_action(flow, FILES).get("failed")
    before = snapshot(flow)
    warm = run_action(flow, dict(FILES, **{rel: bad}))
    assert warm["failed"] and checker in warm["msg"]
    assert snapshot(flow) == before  # neither the file nor the record changed


def rendered_sidecars(count):
    """``{rel: text}`` of real sidecars (kubeflat_specs.render_apps): a chain of apps."""
    catalog = [{"name": "a%d" % i, "image": "example/a:1", "ports": [{"name": "http",
                                                                       "port": 8080}],
                "calls": ["a%d" % (i + 1)] if i < count else []} for i in range(count + 1)]
    model = build_model({"cluster_name": "t", "distribution": "none",
                         "host_networks": ["10.77.0.0/24"]},
                        [{"name": "cp1", "address": "10.77.0.11",
                          "groups": ["kube_control_plane", "k8s_cluster"]}])
    files = render_apps(catalog, {"namespace": "shop"}, model)
    return {rel: text for rel, text in files.items() if rel.startswith("envoy/")}


def test_batched_sidecars_one_bad_is_refused_by_name_cold_and_warm(flow):
    sidecars = rendered_sidecars(5)
    assert len(sidecars) == 5
    files = dict(FILES, **sidecars)
    bad = "envoy/sidecars/shop/a2.yaml"
    broken = dict(files, **{bad: sidecars[bad].replace("connect_timeout: 1s",
                                                       "connect_timeout: soon")})
    for step in ("cold", "good", "warm"):  # cold: in a refused batch; warm: alone
        result = run_action(flow, files if step == "good" else broken)
        if step == "good":
            assert not result.get("failed"), result
            assert result["validated"] == {"manifests": 2, "envoy": 6}
            continue
        assert result["failed"] and "envoy --mode validate refused %s;" % bad in result["msg"]
        assert "kfbatch" not in result["msg"] and "soon" in result["msg"]
        for rel in sidecars:
            assert rel == bad or rel not in result["msg"]


def test_a_file_edited_on_disk_is_validated_again_and_restored(flow):
    run_action(flow, FILES)
    path = flow / "specs" / "shop" / "web.yaml"
    path.write_text(WRONG_TYPE)  # edited behind the record's back
    again = run_action(flow, FILES)
    assert again["validated"] == {"manifests": 1, "envoy": 0}
    assert again["changed_files"] == ["specs/shop/web.yaml"]
    assert path.read_text() == GOOD


def test_another_checker_or_an_unrecorded_file_is_validated_again(flow):
    run_action(flow, FILES, kube="")  # manifests not validated: not recorded as passed
    enabled = run_action(flow, FILES)
    assert not enabled["changed"]
    assert enabled["validated"] == {"manifests": 2, "envoy": 0}
    other = run_action(flow, FILES, kube_version="1.36.0")  # other flags: other checker key
    assert other["validated"] == {"manifests": 2, "envoy": 0}
    (flow / ".kubeflat-apps.validated.json").write_text("not json")
    lost = run_action(flow, FILES, kube_version="1.36.0")
    assert lost["validated"] == {"manifests": 2, "envoy": 1}


def test_check_mode_validates_and_writes_nothing_diff_shows_each_file(flow):
    checked = run_action(flow, dict(FILES, **{"specs/shop/web.yaml": WRONG_TYPE}),
                         check_mode=True)
    assert checked["failed"]  # check mode still validates
    result = run_action(flow, FILES, check_mode=True, diff=True)
    assert result["changed"] and not os.path.exists(str(flow))
    assert sorted(d["after_header"] for d in result["diff"]) == sorted(FILES)
    run_action(flow, FILES)
    before = snapshot(flow)
    changed = dict(FILES, **{"specs/shop/web.yaml": GOOD.replace("replicas: 2", "replicas: 3")})
    result = run_action(flow, changed, check_mode=True, diff=True)
    assert result["changed_files"] == ["specs/shop/web.yaml"]
    assert result["validated"] == {"manifests": 1, "envoy": 0}
    [diff] = result["diff"]
    assert "replicas: 2" in diff["before"] and "replicas: 3" in diff["after"]
    assert snapshot(flow) == before


def test_removed_files_are_deleted_and_a_missing_checker_is_named(flow):
    run_action(flow, FILES)
    smaller = {k: v for k, v in FILES.items() if k != "specs/shop/svc.yaml"}
    result = run_action(flow, smaller)
    assert result["removed_files"] == ["specs/shop/svc.yaml"]
    assert not (flow / "specs" / "shop" / "svc.yaml").exists()
    missing = run_action(flow, smaller, kube="/nonexistent/kubernetes-validate")
    assert missing["failed"]
    assert "kubernetes-validate not found at /nonexistent/kubernetes-validate" in missing["msg"]


def _doc():
    path = os.path.join(ROOT, "plugins", "modules", "render_specs.py")
    namespace = {}
    with open(path) as fh:
        exec(compile(fh.read(), path, "exec"), namespace)  # pylint: disable=exec-used
    return yaml.safe_load(namespace["DOCUMENTATION"]), yaml.safe_load(namespace["RETURN"])


def test_options_are_the_documented_ones():
    doc, ret = _doc()
    assert set(doc["options"]) == set(action.ARGUMENT_SPEC)
    for name, spec in action.ARGUMENT_SPEC.items():
        option = doc["options"][name]
        assert option["type"] == spec["type"], name
        assert option.get("required", False) == spec.get("required", False), name
        assert option.get("default") == spec.get("default"), name
        assert option.get("choices") == spec.get("choices"), name


def test_return_values_are_the_documented_ones(flow):
    _, ret = _doc()
    result = run_action(flow, FILES, diff=True)
    assert set(result) - {"changed", "diff"} == set(ret)


def _manifest_corpus(bad):
    files = {"specs/a%03d.yaml" % i: (GOOD if i % 3 else SERVICE) for i in range(60)}
    for index in bad:
        files["specs/a%03d.yaml" % index] = WRONG_TYPE
    return files


def _validate(monkeypatch, manifests, forked):
    monkeypatch.setattr(action, "FORK_MIN_FILES", 50 if forked else 10 ** 9)
    found = action._Checkers({"kubernetes_validate": KUBE, "kube_version": "1.37.0",
                              "envoy": ENVOY})
    assert found.in_process
    try:
        found.validate(manifests, {"envoy/x.yaml": ENVOY_GOOD})
    except action._Fail as exc:   # pylint: disable=protected-access
        return exc.result["msg"]
    return ""


def test_manifests_checked_in_a_forked_child_give_the_in_process_verdict(monkeypatch):
    assert _validate(monkeypatch, _manifest_corpus([]), forked=True) == ""
    corpus = _manifest_corpus([7, 41])
    forked = _validate(monkeypatch, corpus, forked=True)
    assert "specs/a007.yaml" in forked and "specs/a041.yaml" in forked
    assert "specs/a008.yaml" not in forked
    assert forked == _validate(monkeypatch, corpus, forked=False)


def test_a_forked_manifest_check_that_dies_refuses(monkeypatch):
    monkeypatch.setattr(action, "FORK_MIN_FILES", 1)

    def boom(self, rel, text):
        raise SystemExit("killed")      # the child's check dies: it exits 1

    monkeypatch.setattr(checkers.KubeValidator, "check", boom)
    found = action._Checkers({"kubernetes_validate": KUBE, "kube_version": "1.37.0",
                              "envoy": ENVOY})
    with pytest.raises(action._Fail, match="the check process did not finish"):
        found.validate(_manifest_corpus([]), {"envoy/x.yaml": ENVOY_GOOD})
