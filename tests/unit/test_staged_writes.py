"""Unit tests for the staged writes of kubeflat_staging (Staging: files written beside the
render dir while the checkers run, renamed into place once they passed, removed otherwise) and
for the render_specs action that uses them with the real renderer and the real checkers."""
import copy
import os
import re
import stat
import types

import pytest

from ansible_collections.kubeflat.cluster.plugins.action import render_specs as action
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_staging as staging_mod
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps

from lab_catalog import LAB, ROOT, SETTINGS, lab_model

BIN = os.path.join(ROOT, ".venv", "bin")
MODEL = lab_model()


def tree(directory):
    """``{relative path: (bytes, mode)}`` of every file, and ``{dir/: None}`` of every directory
    under ``directory``."""
    out = {}
    for base, dirs, names in os.walk(str(directory)):
        for name in dirs:
            out[os.path.relpath(os.path.join(base, name), str(directory)) + "/"] = None
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, str(directory))] = (
                    handle.read(), stat.S_IMODE(os.stat(path).st_mode))
    return out


@pytest.fixture
def umask():
    """A umask that would leave files 0600: the writer must still leave them 0644."""
    old = os.umask(0o077)
    yield
    os.umask(old)


ITEMS = {"specs/shop/web.yaml": "kind: Deployment\nname: w\u00e9b\n",
         "envoy/sidecars/shop/web.yaml": "admin: {}\n", "top.yaml": "x: 1\n"}


def staging(dest):
    return staging_mod.Staging(str(dest), [(os.path.join(str(dest), rel), text)
                                        for rel, text in sorted(ITEMS.items())])


def test_staged_files_are_renamed_into_place_with_their_bytes_and_mode_0644(tmp_path, umask):
    dest = tmp_path / "render"
    dest.mkdir()
    (dest / "top.yaml").write_text("old\n")
    written = []
    stage = staging(dest)
    stage.start()
    assert os.path.dirname(stage.directory) == str(dest)
    assert os.path.basename(stage.directory).startswith(staging_mod.STAGING_PREFIX)
    stage.commit(lambda path, text: written.append(path))
    assert written == [] and stage.staged == len(ITEMS)
    files = {rel: entry for rel, entry in tree(dest).items() if entry}
    assert files == {rel: (text.encode("utf-8"), 0o644) for rel, text in ITEMS.items()}
    assert not [name for name in os.listdir(str(dest)) if name.startswith(".")]


def test_files_not_staged_are_written_by_the_writer_in_order(tmp_path):
    written = []
    stage = staging(tmp_path)
    stage.commit(lambda path, text: written.append((path, text)))   # never started
    assert written == [(os.path.join(str(tmp_path), rel), text)
                       for rel, text in sorted(ITEMS.items())]
    assert os.listdir(str(tmp_path)) == []


def test_a_discarded_staging_leaves_nothing_not_even_the_directories_it_made(tmp_path):
    dest = tmp_path / "a" / "b" / "render"
    stage = staging(dest)
    stage.start()
    assert dest.is_dir()
    stage.discard()
    assert os.listdir(str(tmp_path)) == []
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "top.yaml").write_text("old\n")
    before = tree(existing)
    stage = staging(existing)
    stage.start()
    stage.discard()
    assert tree(existing) == before


def test_a_staging_directory_that_cannot_be_made_leaves_every_file_to_the_writer(tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    dest = tmp_path / "file" / "render"
    written = []
    stage = staging(dest)
    stage.start()
    assert isinstance(stage.error, OSError) and stage.staged == 0
    stage.commit(lambda path, text: written.append(path))
    assert written == [os.path.join(str(dest), rel) for rel in sorted(ITEMS)]
    assert sorted(os.listdir(str(tmp_path))) == ["file"]


def test_missing_dirs_lists_what_does_not_exist_outermost_first(tmp_path):
    assert staging_mod.missing_dirs(str(tmp_path)) == []
    deep = tmp_path / "x" / "y"
    assert staging_mod.missing_dirs(str(deep)) == [str(tmp_path / "x"), str(deep)]


# --- the action, with the real renderer and the real checkers --------------------------------

def run(dest, apps, check_mode=False):
    module = action.ActionModule.__new__(action.ActionModule)
    module._task = types.SimpleNamespace(
        args={"dest": str(dest), "part": "apps", "apps": apps, "settings": SETTINGS,
              "model": MODEL, "kubernetes_validate": os.path.join(BIN, "kubernetes-validate"),
              "envoy": os.path.join(BIN, "envoy"), "kube_version": "1.37.0"},
        check_mode=check_mode, diff=False)
    module._connection = types.SimpleNamespace(transport="local")
    try:
        return module._run()
    except action._Fail as exc:   # pylint: disable=protected-access
        return exc.result


def corrupted(kind):
    """render_apps with one file of ``kind`` changed after the render so that its checker
    refuses it (the sidecar's text no longer matches its document: it is parsed)."""
    def render(apps, settings, model, emit=None):
        files = render_apps(apps, settings, model, emit=emit)
        rel = sorted(r for r in files if r.startswith(kind) and "namespace" not in r)[0]
        if kind == "specs/":
            files[rel] = re.sub(r"replicas: \d+", "replicas: two", files[rel], count=1)
        else:
            files[rel] = files[rel].replace("connect_timeout: 1s", "connect_timeout: soon")
        assert files[rel] != files.dumped.get(rel, files)
        return files
    return render


def test_the_action_writes_exactly_the_rendered_files_and_check_mode_nothing(tmp_path):
    dest = tmp_path / "render"
    apps = copy.deepcopy(LAB["app_specs_apps"])
    assert not run(dest, apps, check_mode=True).get("failed")
    assert not dest.exists()                        # check mode: nothing staged either
    result = run(dest, apps)
    assert not result.get("failed"), result
    files = render_apps(copy.deepcopy(apps), SETTINGS, MODEL)
    assert result["validated"] == {"manifests": len([r for r in files if r.startswith("specs/")]),
                                   "envoy": len(files.dumped)}
    written = {rel: entry for rel, entry in tree(dest).items()
               if entry and not os.path.basename(rel).startswith(".kubeflat-")}
    assert written == {rel: (text.encode("utf-8"), 0o644) for rel, text in files.items()}
    assert sorted(n for n in os.listdir(str(dest)) if n.startswith(".")) == [
        ".kubeflat-apps.json", ".kubeflat-apps.validated.json"]


@pytest.mark.parametrize("kind,checker", [("specs/", "kubernetes-validate --strict refused"),
                                          ("envoy/", "envoy --mode validate refused")])
@pytest.mark.parametrize("fork_min", [1, 10 ** 9], ids=["streamed-to-a-child", "in-process"])
def test_a_refusal_writes_nothing_cold_or_warm(tmp_path, monkeypatch, kind, checker, fork_min):
    # fork_min 1: the manifests go to a check child as they are rendered (the corrupted one
    # twice: the child must judge its last text); otherwise they are checked in this process.
    monkeypatch.setattr(action, "FORK_MIN_FILES", fork_min)
    apps = copy.deepcopy(LAB["app_specs_apps"])
    dest = tmp_path / "render"
    assert not run(dest, apps).get("failed")
    before = tree(dest)
    monkeypatch.setattr(action, "render_apps", corrupted(kind))
    changed = copy.deepcopy(apps)                   # other inputs: rendered, files changed
    changed[0]["image"] = "example/other:2"
    refused = run(dest, changed)
    assert refused["failed"] and checker in refused["msg"], refused
    assert tree(dest) == before                     # no staged file, no staging directory
    cold = tmp_path / "cold" / "render"
    assert checker in run(cold, apps)["msg"]
    assert not (tmp_path / "cold").exists()         # not even the directories staging made
