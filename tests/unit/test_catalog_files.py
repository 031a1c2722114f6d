"""plugin_utils/kubeflat_catalog_files.py and filter/catalog.py: the app catalog kept as files
(app_specs_apps_dir): which files are read, in what order, what they may hold, how errors name
the file, the digest the render memo keys on, and the preflight's check and its skip."""
import json
import os

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeflat.cluster.plugins.filter import catalog as catalog_filter
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import SpecError
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_catalog_files as cf

WEB = "name: web\nimage: r.example/web:1\nports: [{name: http, port: 8080}]\n"
API = "- name: api\n  image: r.example/api:1\n  ports: [{name: http, port: 80}]\n" \
      "- name: db\n  image: r.example/db:1\n  ports: [{name: pg, port: 5432}]\n"


def write(directory, files):
    for rel, text in files.items():
        path = os.path.join(str(directory), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)


def test_files_below_the_directory_are_read_sorted_hidden_and_other_names_skipped(tmp_path):
    write(tmp_path, {"b.yml": WEB, "a/c.yaml": API, "README.md": "x", ".hidden.yml": WEB,
                     ".git/x.yml": WEB, "z.yml.bak": WEB})
    assert cf.catalog_paths(str(tmp_path)) == ["a/c.yaml", "b.yml"]
    apps, origin = cf.parse_catalog(cf.read_catalog(str(tmp_path)))
    assert [a["name"] for a in apps] == ["api", "db", "web"]
    assert origin == {"api": "a/c.yaml", "db": "a/c.yaml", "web": "b.yml"}


def test_an_empty_or_comment_only_file_holds_no_app(tmp_path):
    write(tmp_path, {"a.yml": "", "b.yml": "# nothing yet\n", "c.yml": WEB})
    apps, _origin, _digest = cf.load_catalog(str(tmp_path))
    assert [a["name"] for a in apps] == ["web"]


@pytest.mark.parametrize("directory, reason", [
    ("apps.d", "must be an absolute path"),
    ("", "must be an absolute path"),
    ("/nonexistent/apps.d", "is not a directory"),
])
def test_an_unusable_directory_is_refused_naming_the_variable(directory, reason):
    with pytest.raises(SpecError) as exc:
        cf.catalog_paths(directory)
    assert exc.value.var == "app_specs_apps_dir" and reason in exc.value.reason
    assert exc.value.value == directory


@pytest.mark.parametrize("text, var, reason", [
    ("name: [unclosed\n", "app_specs_apps_dir/web.yml", "is not valid YAML"),
    ("just a string\n", "app_specs_apps_dir/web.yml", "must be an app"),
    ("- name: a\n- 3\n", "app_specs_apps_dir/web.yml[1]", "must be an app"),
])
def test_a_file_that_holds_no_apps_is_refused_naming_the_file(tmp_path, text, var, reason):
    write(tmp_path, {"web.yml": text})
    with pytest.raises(SpecError) as exc:
        cf.load_catalog(str(tmp_path))
    assert exc.value.var == var and reason in exc.value.reason


def test_non_utf8_bytes_are_refused_naming_the_file(tmp_path):
    (tmp_path / "web.yml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError) as exc:
        cf.load_catalog(str(tmp_path))
    assert exc.value.var == "app_specs_apps_dir/web.yml" and "UTF-8" in exc.value.reason


def test_the_digest_follows_names_and_bytes_only(tmp_path):
    write(tmp_path, {"web.yml": WEB, "api.yml": API})
    first = cf.catalog_digest(cf.read_catalog(str(tmp_path)))
    os.utime(str(tmp_path / "web.yml"), (1, 1))            # a touch alone changes nothing
    assert cf.catalog_digest(cf.read_catalog(str(tmp_path))) == first
    write(tmp_path, {"web.yml": WEB.replace(":1", ":2")})  # one byte does
    assert cf.catalog_digest(cf.read_catalog(str(tmp_path))) != first
    write(tmp_path, {"web.yml": WEB})
    os.rename(str(tmp_path / "api.yml"), str(tmp_path / "api2.yml"))   # so does a name
    assert cf.catalog_digest(cf.read_catalog(str(tmp_path))) != first


def test_errors_about_an_app_from_a_file_name_that_file(tmp_path):
    origin = {"web": "shop/web.yml"}
    assert cf.where_defined("app_specs_apps[web].calls[0]", origin, "/srv/apps.d") == \
        " (app web is defined in /srv/apps.d/shop/web.yml)"
    assert cf.where_defined("app_specs_apps[api].replicas", origin, "/srv/apps.d") == ""
    assert cf.where_defined("app_specs_envoy.retries", origin, "/srv/apps.d") == ""


def test_the_preflight_check_reports_problems_and_skips_a_catalog_that_rendered(tmp_path):
    apps_dir, render_dir = tmp_path / "apps.d", tmp_path / "rendered"
    render_dir.mkdir()
    write(apps_dir, {"web.yml": WEB})
    assert cf.catalog_dir_errors(str(apps_dir), str(render_dir)) == []
    write(apps_dir, {"web.yml": "name: [unclosed\n"})
    errors = cf.catalog_dir_errors(str(apps_dir), str(render_dir))
    assert len(errors) == 1 and errors[0].startswith("app_specs_apps_dir/web.yml=")
    assert "is not valid YAML" in errors[0]
    # The render records the digest of what it read: the same bytes are not parsed again
    # (so this broken file would pass here), other bytes are.
    digest = cf.catalog_digest(cf.read_catalog(str(apps_dir)))
    (render_dir / cf.CHECKED_NAME).write_text(cf.checked_text(str(apps_dir), digest))
    assert cf.catalog_dir_errors(str(apps_dir), str(render_dir)) == []
    write(apps_dir, {"web.yml": "name: [unclosed again\n"})
    assert cf.catalog_dir_errors(str(apps_dir), str(render_dir)) != []
    # A record of another directory is not trusted.
    (render_dir / cf.CHECKED_NAME).write_text(cf.checked_text("/elsewhere", digest))
    write(apps_dir, {"web.yml": "name: [unclosed\n"})
    assert cf.catalog_dir_errors(str(apps_dir), str(render_dir)) != []
    assert cf.catalog_dir_errors("", str(render_dir)) == []
    assert cf.catalog_dir_errors("rel/apps.d") == [
        "app_specs_apps_dir='rel/apps.d': must be an absolute path (e.g. "
        "\"{{ inventory_dir }}/apps.d\")"]


def test_the_checked_record_is_json_naming_the_directory(tmp_path):
    data = json.loads(cf.checked_text("/srv/apps.d", "abc"))
    assert data == {"directory": "/srv/apps.d", "digest": "abc"}


def test_filter_app_catalog_appends_the_files_apps(tmp_path):
    write(tmp_path, {"web.yml": WEB})
    inline = [{"name": "api", "image": "x", "ports": []}]
    assert [a["name"] for a in catalog_filter.kubeflat_app_catalog(inline, str(tmp_path))] == [
        "api", "web"]
    assert catalog_filter.kubeflat_app_catalog(inline, "") == inline
    with pytest.raises(AnsibleFilterError, match="app_specs_apps_dir='x'"):
        catalog_filter.kubeflat_app_catalog([], "x")


def test_filter_catalog_dir_errors_checks_each_named_directory_once(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    write(good, {"web.yml": WEB})
    write(bad, {"web.yml": "- 3\n"})
    hosts = [{"app_specs_apps_dir": str(good)}, {"app_specs_apps_dir": str(good)},
             {"envoy_ingress_apps_dir": str(bad)}, {"app_specs_apps_dir": ""},
             {"app_specs_apps_dir": ["not", "a", "string"]}, {"app_specs_apps_dir": "rel"}, {}]
    assert catalog_filter.kubeflat_catalog_dir_errors(hosts) == [
        "envoy_ingress_apps_dir/web.yml[0]=3: must be an app (a mapping with name, image, "
        "ports) or a list of apps"]
