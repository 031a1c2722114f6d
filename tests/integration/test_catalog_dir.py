"""The app catalog kept as files (app_specs_apps_dir) through `site.yml --tags specs/deploy`.

Like test_specs_render.py, these runs need no booted lab: rendering and the preflight run on
the controller. The lab catalog (inventories/lab/group_vars/all/apps.yml) is split into one
file per app, with app_specs_apps emptied.

Asserts:
* the files render exactly the bytes the same catalog renders from app_specs_apps (every
  spec and Envoy config, both parts), all validated by the real checkers;
* a second run reports changed=0, validates nothing and leaves every file as it was;
* an edited file shows in `--check --diff` and nothing is written;
* a file that is not YAML is refused by the preflight, naming the variable and the file,
  before any render task starts; an app error found by the render names the app's file;
  a relative directory is refused naming the variable; nothing is written in each case.
"""
import contextlib
import os
import shutil
import tempfile

import pytest
import yaml

from test_specs_render import LAB_APPS, changed_hosts, run, snapshot

OWN_RECORDS = (".kubeflat-catalog.json",)


def artefacts(directory):
    """sha256 of every rendered spec and Envoy config."""
    return {rel: sha for rel, sha in snapshot(directory).items()
            if rel.startswith(("specs/", "envoy/"))}


@pytest.fixture(scope="module")
def catalog():
    """(apps dir, render dir of the files, render dir of the variable, first run)."""
    work = tempfile.mkdtemp(prefix="kubeflat-catalog-dir-")
    apps_dir = os.path.join(work, "apps.d")
    os.makedirs(os.path.join(apps_dir, "shop"))
    for app in LAB_APPS:
        with open(os.path.join(apps_dir, "shop", app["name"] + ".yml"), "w") as handle:
            yaml.safe_dump(app, handle, sort_keys=False)
    try:
        by_var = os.path.join(work, "by-var")
        result = run(by_var)
        assert result.rc == 0, result.text[-4000:]
        by_files = os.path.join(work, "by-files")
        first = run(by_files, extravars={"app_specs_apps": [], "app_specs_apps_dir": apps_dir})
        assert first.rc == 0, first.text[-4000:]
        yield apps_dir, by_files, by_var, first
    finally:
        shutil.rmtree(work, ignore_errors=True)


def files_vars(apps_dir, **more):
    return dict({"app_specs_apps": [], "app_specs_apps_dir": apps_dir}, **more)


@contextlib.contextmanager
def edited(path, **changes):
    """The app file at ``path`` with ``changes`` to its app, restored afterwards."""
    with open(path) as handle:
        original = handle.read()
    try:
        with open(path, "w") as handle:
            yaml.safe_dump(dict(yaml.safe_load(original), **changes), handle, sort_keys=False)
        yield
    finally:
        with open(path, "w") as handle:
            handle.write(original)


def test_the_files_render_what_the_variable_renders(catalog):
    _apps_dir, by_files, by_var, first = catalog
    assert artefacts(by_files) == artefacts(by_var)
    assert "specs/shop/web.yaml" in artefacts(by_files)
    assert "envoy/sidecars/shop/catalog.yaml" in artefacts(by_files)
    # Every file of both parts was validated by the real checkers on the first run.
    for render in first.renders:
        assert sum(render["validated"].values()) == len(render["files"]) > 0
    assert os.path.isfile(os.path.join(by_files, OWN_RECORDS[0]))


def test_a_second_run_changes_and_validates_nothing(catalog):
    apps_dir, by_files, _by_var, _first = catalog
    before = snapshot(by_files)
    second = run(by_files, extravars=files_vars(apps_dir))
    assert second.rc == 0, second.text[-4000:]
    assert changed_hosts(second) == {}, second.text[-4000:]
    assert [r["validated"] for r in second.renders] == [{"manifests": 0, "envoy": 0}] * 2
    assert snapshot(by_files) == before


def test_an_edited_file_shows_in_check_diff_and_nothing_is_written(catalog):
    apps_dir, by_files, _by_var, _first = catalog
    before = snapshot(by_files)
    with edited(os.path.join(apps_dir, "shop", "prices.yml"), replicas=4):
        result = run(by_files, tags="deploy", check=True, diff=True,
                     extravars=files_vars(apps_dir))
    assert result.rc == 0, result.text[-4000:]
    assert changed_hosts(result)
    assert "--- before: specs/shop/prices.yaml" in result.text
    assert "+  replicas: 4" in result.text
    assert snapshot(by_files) == before


def test_a_file_that_is_not_yaml_is_refused_by_the_preflight(catalog):
    apps_dir, by_files, _by_var, _first = catalog
    before = snapshot(by_files)
    broken = os.path.join(apps_dir, "shop", "zz-broken.yml")
    with open(broken, "w") as handle:
        handle.write("name: [unclosed\n")
    try:
        result = run(by_files, tags="deploy", extravars=files_vars(apps_dir))
    finally:
        os.unlink(broken)
    assert result.rc != 0
    assert "kubeflat inputs are invalid" in result.text
    assert "app_specs_apps_dir/shop/zz-broken.yml=" in result.text
    assert "is not valid YAML" in result.text
    assert not result.renders and "Render and validate" not in result.text
    assert snapshot(by_files) == before


def test_an_app_error_names_the_file_that_defines_the_app(catalog):
    apps_dir, by_files, _by_var, _first = catalog
    path = os.path.join(apps_dir, "shop", "web.yml")
    before = snapshot(by_files)
    with edited(path, calls=["inventory"]):
        result = run(by_files, tags="deploy", extravars=files_vars(apps_dir))
    assert result.rc != 0
    assert "app_specs_apps[web].calls[0]" in result.text
    assert "(app web is defined in %s)" % path in result.text
    assert snapshot(by_files) == before


def test_a_relative_directory_is_refused_naming_the_variable(catalog):
    _apps_dir, by_files, _by_var, _first = catalog
    before = snapshot(by_files)
    result = run(by_files, tags="deploy", extravars=files_vars("apps.d"))
    assert result.rc != 0
    assert "app_specs_apps_dir=" in result.text and "must be an absolute path" in result.text
    assert not result.renders
    assert snapshot(by_files) == before
