"""Values read without templating (plugins/plugin_utils/kubeflat_inputs.py ``template_free`` /
``untemplated``), the preflight's input check over real ``hostvars`` (a value shared by every
host is validated once; a templated value is templated per host and refused naming the host),
and the render action reading its catalog from the task's variables (apps_var).

Everything here runs on Ansible's own objects: an inventory parsed by InventoryManager, the
variables of VariableManager, HostVars, and the real Templar of the action plugin.
"""
import datetime
import os
import textwrap
import types

import pytest

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, is_trusted_as_template, trust_as_template
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

from ansible_collections.kubeflat.cluster.plugins.action import render_specs as action
from ansible_collections.kubeflat.cluster.plugins.filter.inputs import kubeflat_input_errors
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_checkers
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_inputs
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_inputs import (
    load_role_specs, template_free, untemplated, validate_inputs)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPECS = load_role_specs(os.path.join(ROOT, "roles"))
CATALOG = [{"name": "app%02d" % i, "image": "registry.example/app%02d:1" % i,
            "ports": [{"name": "http", "port": 8080}], "config": {"id": i, "on": i % 2 == 0}}
           for i in range(20)]


# --- template_free / untemplated --------------------------------------------------------------

def _loaded(tmp_path, text, name="data.yml"):
    """``text`` loaded as Ansible loads a vars file (tagged, trusted strings)."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return DataLoader().load_from_file(str(path))


def test_plain_and_loaded_data_is_template_free(tmp_path):
    assert template_free(CATALOG)
    loaded = _loaded(tmp_path,
                     "apps:\n  - {name: web, port: 80, ratio: 0.5, enabled: true, x: null}\n")
    assert type(loaded["apps"][0]["name"]).__name__ == "_AnsibleTaggedStr"  # really tagged
    assert template_free(loaded)
    assert untemplated(loaded) == (True, {"apps": [{"name": "web", "port": 80, "ratio": 0.5,
                                                    "enabled": True, "x": None}]})
    assert type(untemplated(loaded)[1]["apps"][0]["name"]) is str


@pytest.mark.parametrize("text", ["{{ x }}", "a {% if y %}b{% endif %}", "c {# note #}",
                                  "#jinja2:variable_start_string:'[[' [[ x ]]"])
def test_any_jinja_anywhere_is_not_template_free(text):
    assert not template_free(text)
    assert not template_free([{"name": "web", "env": {"deep": [1, text]}}])
    assert not template_free({text: "key position"})
    assert untemplated([{"image": text}]) == (False, None)


@pytest.mark.parametrize("value", [datetime.date(2026, 1, 1), (1, 2), {1, 2}, b"bytes", object()])
def test_types_templating_could_transform_are_left_to_ansible(value):
    assert not template_free([{"name": "web", "odd": value}])


def test_a_mapping_with_a_key_that_is_no_string_is_left_to_ansible(tmp_path):
    assert not template_free([{"name": "web", "env": {True: "yes"}}])
    assert not template_free({1: "a"})
    assert not template_free(_loaded(tmp_path, "env: {on: 1}\n"))  # YAML 1.1: `on` is True


def test_a_lazy_container_is_left_to_ansible(tmp_path):
    loaded = _loaded(tmp_path, "apps: [{name: web}]\n")
    lazy = Templar(loader=DataLoader(), variables={"v": loaded["apps"]})
    # What a filter sees of a variable inside a template: a lazy container, not data.
    captured = []
    lazy.environment.filters["grab"] = lambda value: captured.append(value) or ""
    lazy.template(trust_as_template("{{ v | grab }}"))
    assert captured and not template_free(captured[0])


def test_a_bare_variable_reference_is_followed_only_when_defined_and_trusted():
    variables = {"app_specs_apps": CATALOG, "alias": trust_as_template("{{ app_specs_apps }}")}
    for text in ("{{ app_specs_apps }}", "{{app_specs_apps}}", "{{ app_specs_apps | default([]) }}",
                 "{{ app_specs_apps|default('x') }}", "{{ alias | default({}) }}"):
        assert untemplated(trust_as_template(text), variables, is_trusted_as_template) == \
            (True, CATALOG), text
    for text in ("{{ app_specs_apps }} ", "{{ app_specs_apps }}\n", "{{ nope }}",
                 "{{ app_specs_apps | default([], true) }}", "{{ app_specs_apps[0] }}",
                 "{{ app_specs_apps | list }}", "{{ nope | default([]) }}"):
        assert untemplated(trust_as_template(text), variables, is_trusted_as_template) == \
            (False, None), text
    literal = {"none": CATALOG}  # {{ none }} is Jinja's None, whatever the variables say
    assert untemplated(trust_as_template("{{ none }}"), literal, is_trusted_as_template) == \
        (False, None)
    # Ansible does not template an untrusted string, so it is not followed either.
    assert untemplated("{{ app_specs_apps }}", variables, is_trusted_as_template) == (False, None)
    assert untemplated(trust_as_template("{{ app_specs_apps }}"), variables) == (False, None)
    loop = {"a": trust_as_template("{{ b }}"), "b": trust_as_template("{{ a }}")}
    assert untemplated(loop["a"], loop, is_trusted_as_template) == (False, None)
    # A chain ending in something to template is left whole to Ansible.
    chained = {"a": trust_as_template("{{ b }}"), "b": [{"image": trust_as_template("{{ r }}")}]}
    assert untemplated(chained["a"], chained, is_trusted_as_template) == (False, None)


# --- the preflight's check over real hostvars ------------------------------------------------

def _inventory(tmp_path, group_vars, host_vars):
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "hosts.yml").write_text(
        "all:\n  hosts:\n" + "".join("    %s: {}\n" % h for h in sorted(host_vars)))
    (inv / "group_vars" / "all.yml").write_text(textwrap.dedent(group_vars))
    for host, text in host_vars.items():
        (inv / "host_vars" / ("%s.yml" % host)).write_text(textwrap.dedent(text) or "{}\n")
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(inv)])
    variables = VariableManager(loader=loader, inventory=manager)
    hostvars = HostVars(manager, variables, loader)
    return [hostvars[h] for h in sorted(host_vars)], hostvars


def _catalog_yaml(apps):
    return "app_specs_apps:\n" + "".join(
        "  - {name: %s, image: '%s', ports: [{name: http, port: 8080}]}\n"
        % (a["name"], a["image"]) for a in apps)


@pytest.fixture
def counted(monkeypatch):
    """Counts of the slow path (templating through hostvars) and of validations."""
    calls = {"templated": [], "checked": []}
    plain, check = kubeflat_inputs._plain, kubeflat_inputs.check_variable

    def templated(value):
        calls["templated"].append(value)
        return plain(value)

    def checked(name, spec, value):
        calls["checked"].append(name)
        return check(name, spec, value)

    monkeypatch.setattr(kubeflat_inputs, "_plain", templated)
    monkeypatch.setattr(kubeflat_inputs, "check_variable", checked)
    return calls


def test_a_catalog_shared_by_every_host_is_read_and_validated_once(tmp_path, counted):
    hosts = {"h%d" % i: "" for i in range(6)}
    hvs, hostvars = _inventory(tmp_path, _catalog_yaml(CATALOG), hosts)
    assert kubeflat_input_errors(hvs, hostvars=hostvars) == []
    assert counted["templated"] == []                        # never templated per host
    assert counted["checked"].count("app_specs_apps") == 1   # one value, one validation
    # Without hostvars (the old path) every host's value is templated: 6 times.
    counted["checked"][:] = []
    assert validate_inputs(SPECS, hvs) == []
    assert len(counted["templated"]) == 6
    assert counted["checked"].count("app_specs_apps") == 1


def test_a_shared_bad_value_is_refused_once_naming_every_host(tmp_path, counted):
    hvs, hostvars = _inventory(tmp_path, "app_specs_apps: {web: {image: x}}\n",
                               {"cp1": "", "w1": ""})
    errors = kubeflat_input_errors(hvs, hostvars=hostvars)
    assert len(errors) == 1 and errors[0].startswith("app_specs_apps={'web': {'image': 'x'}}")
    assert "(hosts: cp1, w1)" in errors[0]
    assert counted["templated"] == []


def test_a_templated_value_is_templated_per_host_and_the_bad_host_named(tmp_path, counted):
    hvs, hostvars = _inventory(
        tmp_path, "app_specs_namespace: \"{{ team }}-apps\"\n" + _catalog_yaml(CATALOG[:2]),
        {"cp1": "team: shop\n", "w1": "team: Bad_Team\n", "w2": "team: shop\n"})
    errors = kubeflat_input_errors(hvs, hostvars=hostvars)
    assert len(errors) == 1, errors
    assert errors[0].startswith("app_specs_namespace='Bad_Team-apps': ")
    assert errors[0].endswith("(hosts: w1)")
    assert len(counted["templated"]) == 3  # the namespace, once per host; the catalog never


def test_a_template_inside_the_catalog_is_templated_per_host(tmp_path, counted):
    apps = [dict(CATALOG[0], image="{{ registry }}/app00:1")]
    hvs, hostvars = _inventory(tmp_path, _catalog_yaml(apps),
                               {"cp1": "registry: r.example\n", "w1": "registry: r.example\n"})
    assert kubeflat_input_errors(hvs, hostvars=hostvars) == []
    assert len(counted["templated"]) == 2
    assert counted["templated"][0][0]["image"] == "r.example/app00:1"


def test_nothing_is_remembered_between_checks_a_changed_value_is_refused(tmp_path):
    hvs, hostvars = _inventory(tmp_path, _catalog_yaml(CATALOG), {"cp1": "", "w1": ""})
    assert kubeflat_input_errors(hvs, hostvars=hostvars) == []
    # The same object changed in place (same id): checked again, and refused.
    hostvars.raw_get("cp1")["app_specs_apps"].insert(0, "not-a-mapping")
    hvs = [hostvars["cp1"], hostvars["w1"]]
    errors = kubeflat_input_errors(hvs, hostvars=hostvars)
    assert len(errors) == 1 and errors[0].startswith("app_specs_apps=")
    assert errors[0].startswith("app_specs_apps=['not-a-mapping', ")
    assert "unable to convert to dict" in errors[0] and errors[0].endswith("(hosts: cp1, w1)")


def test_an_undefined_variable_in_a_value_is_still_reported(tmp_path):
    hvs, hostvars = _inventory(tmp_path, "app_specs_namespace: \"{{ nowhere }}\"\n",
                               {"cp1": ""})
    errors = kubeflat_input_errors(hvs, hostvars=hostvars)
    assert len(errors) == 1 and errors[0].startswith("app_specs_namespace=(template): "
                                                     "cannot be templated")
    assert "nowhere" in errors[0] and "(hosts: cp1)" in errors[0]


# --- the render action reading apps_var -----------------------------------------------------

def _action(task_vars):
    module = action.ActionModule.__new__(action.ActionModule)
    module._templar = Templar(loader=DataLoader(), variables=task_vars)
    return module


def test_the_action_reads_a_template_free_catalog_as_it_is():
    assert _action({"apps": CATALOG})._catalog("apps", {"apps": CATALOG}) == CATALOG


def test_a_tagged_catalog_has_the_render_memo_key_of_its_plain_copy(tmp_path):
    text = "".join("  - {name: app%d, image: 'r/\u00e9%d:1', ratio: %d.5, port: %d, tls: yes}\n"
                   % (i, i, i, 8000 + i) for i in range(5))
    tagged = _loaded(tmp_path, "apps:\n" + text)["apps"]
    found, raw = untemplated(tagged, plain=False)
    assert found and raw is tagged and type(raw[0]).__name__ == "_AnsibleTaggedDict"
    plain = untemplated(tagged)[1]
    assert type(plain[0]) is dict and plain == raw
    assert kubeflat_checkers.inputs_key("code", {"apps": raw}) == \
        kubeflat_checkers.inputs_key("code", {"apps": plain})


def test_the_action_follows_the_edge_roles_default_alias():
    task_vars = {"app_specs_apps": CATALOG,
                 "envoy_ingress_apps": trust_as_template("{{ app_specs_apps | default([]) }}")}
    assert _action(task_vars)._catalog("envoy_ingress_apps", task_vars) == CATALOG


def test_the_action_templates_a_catalog_with_jinja_in_it():
    task_vars = {"registry": "r.example",
                 "apps": [dict(CATALOG[0], image=trust_as_template("{{ registry }}/app00:1"))],
                 "alias": trust_as_template("{{ apps | default([]) }}")}
    for name in ("apps", "alias"):
        apps = _action(task_vars)._catalog(name, task_vars)
        assert apps == [dict(CATALOG[0], image="r.example/app00:1")]
        assert type(apps[0]["image"]) is str


def test_the_action_refuses_an_undefined_or_wrong_catalog_naming_it():
    with pytest.raises(action._Fail) as undefined:
        _action({})._catalog("app_specs_apps", {})
    assert "apps_var names app_specs_apps, which is not defined" in undefined.value.result["msg"]
    bad = {"app_specs_apps": [CATALOG[0], "web"]}
    with pytest.raises(action._Fail) as wrong:
        _action(bad)._catalog("app_specs_apps", bad)
    assert wrong.value.result["msg"] == ("kubeflat app specs are invalid: app_specs_apps must "
                                         "be a list of mappings, got 'web'")
    assert wrong.value.result["variable"] == "app_specs_apps"


def test_apps_and_apps_var_are_mutually_exclusive(tmp_path):
    module = action.ActionModule.__new__(action.ActionModule)
    module._task = types.SimpleNamespace(
        args={"dest": str(tmp_path), "apps": CATALOG, "apps_var": "app_specs_apps",
              "model": {}}, check_mode=False, diff=False)
    module._connection = types.SimpleNamespace(transport="local")
    with pytest.raises(action._Fail) as both:
        module._run({"app_specs_apps": CATALOG})
    assert "mutually exclusive: apps|apps_var" in both.value.result["msg"]
