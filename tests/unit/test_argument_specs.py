"""Every option of every role's argument_specs, walked: wrong types and out-of-range values are
refused with the variable and the value named (plugins/plugin_utils/kubeflat_inputs.py), role
defaults agree with the specs, and the shipped inventories validate cleanly.
"""
import glob
import os

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_inputs
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_inputs import (
    RULES, load_role_specs, unknown_inputs, validate_inputs)
from ansible_collections.kubeflat.cluster.plugins.filter.inputs import kubeflat_input_errors, kubeflat_input_warnings

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPECS = load_role_specs(os.path.join(ROOT, "roles"))
HOST = "node-a"


def _options():
    """(role, entry point, variable, spec) for every option of every entry point."""
    for role, spec in sorted(SPECS.items()):
        for entry, data in sorted(spec["entry_points"].items()):
            for name, opt in sorted(((data or {}).get("options") or {}).items()):
                yield role, entry, name, opt


def _sub_options():
    """(variable, sub-option, parent spec, sub spec) for options with declared sub-options."""
    for _role, _entry, name, opt in _options():
        for sub, sub_spec in sorted((opt.get("options") or {}).items()):
            yield name, sub, opt, sub_spec


OPTIONS = list(_options())
SUB_OPTIONS = list(_sub_options())
WRONG = {"str": {"not": "a string"}, "path": ["not", "a", "path"], "int": "not-a-number",
         "bool": "maybe", "list": {"not": "a list"}, "dict": 12345}


def _errors(name, value):
    return validate_inputs(SPECS, {HOST: {name: value}})


def _valid(spec):
    """A value of the spec's type that passes its rules (for required sibling sub-options)."""
    return {"str": "http", "path": "/tmp/x", "int": 80, "bool": True, "list": [],
            "dict": {}, "raw": "1s"}[spec.get("type", "str")]


def _embed(parent, sub, value):
    """A parent option value whose sub-option ``sub`` is ``value`` (required siblings valid)."""
    item = {k: _valid(s) for k, s in (parent.get("options") or {}).items()
            if s.get("required") and k != sub}
    item[sub] = value
    return [item] if parent.get("type") == "list" else item


def _assert_named(errors, name, shown):
    assert errors, "nothing refused for %s=%r" % (name, shown)
    assert any(name in e and shown in e and HOST in e for e in errors), errors


def test_the_walk_sees_every_role_and_many_options():
    assert len({role for role, _e, _n, _o in OPTIONS}) == len(glob.glob(
        os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")))
    assert len(OPTIONS) > 100


@pytest.mark.parametrize("role,entry,name,opt", OPTIONS,
                         ids=["%s:%s" % (e, n) for _r, e, n, _o in OPTIONS])
def test_a_wrong_type_is_refused_naming_variable_and_value(role, entry, name, opt):
    kind = opt.get("type", "str")
    if kind == "raw":
        pytest.skip("type raw accepts any value")  # none in the specs today
    bad = WRONG[kind]
    _assert_named(_errors(name, bad), name, repr(bad) if kind != "dict" else "12345")


@pytest.mark.parametrize("name,sub,parent,sub_spec", SUB_OPTIONS,
                         ids=["%s.%s" % (n, s) for n, s, _p, _s in SUB_OPTIONS])
def test_a_wrong_sub_option_type_is_refused_naming_it(name, sub, parent, sub_spec):
    kind = sub_spec.get("type", "str")
    if kind == "raw":
        bad = {"not": "a duration"}  # raw Envoy durations: the builder's rule refuses them
    else:
        bad = WRONG[kind]
    errors = _errors(name, _embed(parent, sub, bad))
    assert errors, (name, sub, bad)
    assert any(name in e and sub in e and HOST in e for e in errors), errors


def _out_of_range():
    """(variable, value to give, path named, value named) for every choice and rule."""
    cases = []
    for _role, _entry, name, opt in OPTIONS:
        if opt.get("choices"):
            cases.append((name, "not-a-choice", name, "not-a-choice"))
    bad_by_check = {"_cidr": "10.0.0.1/8", "_ipv4": "300.1.1.1", "_sans": "bad_name.example",
                    "_ifname": "a-name-longer-than-15", "_abs_path": "relative/dir",
                    "_dns_name": "cluster.local.",
                    "check": "Not_A_Label", "_envoy": {"retries": 99}}
    for path, rule in sorted(RULES.items(), key=lambda kv: kv[0]):
        name = path.split(".")[0].split("[")[0]
        if isinstance(rule, tuple):
            values = [rule[1] - 1, rule[2] + 1]
        else:
            values = [bad_by_check[rule.__name__]]
        for bad in values:
            value, named = bad, name
            rest = path[len(name):]
            parent = SPECS_BY_NAME[name]
            if rest == "[]":
                value, named = [bad], name + "[0]"
            elif rest.startswith("[]."):
                value, named = _embed(parent, rest[3:], bad), "%s[0].%s" % (name, rest[3:])
            elif rest.startswith("."):
                value, named = {rest[1:]: bad}, path
            shown = "99" if isinstance(bad, dict) else repr(bad)
            cases.append((name, value, named, shown))
    return cases


SPECS_BY_NAME = {name: opt for _r, _e, name, opt in OPTIONS}
OUT_OF_RANGE = _out_of_range()


@pytest.mark.parametrize("name,value,named,shown", OUT_OF_RANGE,
                         ids=["%s=%r" % (c[2], c[3]) for c in OUT_OF_RANGE])
def test_an_out_of_range_value_is_refused_naming_it(name, value, named, shown):
    _assert_named(_errors(name, value), named, shown)


def test_every_rule_names_an_option_of_some_role():
    for path in RULES:
        assert path.split(".")[0].split("[")[0] in SPECS_BY_NAME, path


def test_every_int_option_has_a_range():
    ranged = {p for p, r in RULES.items() if isinstance(r, tuple)}
    for _role, _entry, name, opt in OPTIONS:
        if opt.get("type") == "int":
            assert name in ranged, name
    for name, sub, parent, sub_spec in SUB_OPTIONS:
        if sub_spec.get("type") == "int":
            sep = "[]." if parent.get("type") == "list" else "."
            assert name + sep + sub in ranged, (name, sub)


@pytest.mark.parametrize("role", sorted(SPECS))
def test_every_role_default_is_a_documented_option_with_the_same_default(role):
    spec = SPECS[role]
    for name, value in spec["defaults"].items():
        assert name in spec["options"], "%s: %s is in defaults/main.yml but not in the spec" % (
            role, name)
        opt = spec["options"][name]
        if "default" in opt:
            assert opt["default"] == value, (name, opt["default"], value)


@pytest.mark.parametrize("role", sorted(SPECS))
def test_every_role_default_passes_its_own_validation(role):
    spec = SPECS[role]
    plain = {n: v for n, v in spec["defaults"].items()
             if not (isinstance(v, str) and "{{" in v)}  # templated defaults need hostvars
    assert validate_inputs({role: spec}, {HOST: plain}) == []


def test_options_shared_by_entry_points_have_one_spec():
    for role, spec in SPECS.items():
        seen = {}
        for entry, data in spec["entry_points"].items():
            for name, opt in ((data or {}).get("options") or {}).items():
                assert seen.setdefault(name, opt) == opt, (role, entry, name)


def test_one_bad_group_value_is_reported_once_naming_the_hosts():
    hosts = {"h%02d" % i: {"kubeflat_cni": "calico", "kubeflat_apiserver_port": 6443}
             for i in range(10)}
    hosts["h03"]["kubeflat_apiserver_port"] = "0"
    errors = validate_inputs(SPECS, hosts)
    assert len(errors) == 2, errors
    assert "kubeflat_cni='calico'" in errors[1] and "h00" in errors[1] and "4 more" in errors[1]
    assert errors[0].startswith("kubeflat_apiserver_port='0': must be between 1 and 65535")
    assert "(hosts: h03)" in errors[0]


def test_unset_variables_and_other_prefixes_are_not_validated():
    hosts = {"a": {"inventory_hostname": "a", "ansible_host": {"odd": 1},
                   "unrelated_port": "x", "kubeflat_cni": "flannel"}}
    assert validate_inputs(SPECS, hosts) == []


def test_misspelt_role_variable_is_a_warning_with_a_suggestion():
    hosts = [{"inventory_hostname": "cp1", "kubeflat_pod_cdir": "10.244.0.0/16",
              "kubeflat_model": {}, "kubeflat_lab_name": "x", "cni_static_mtu": 1500}]
    warnings = unknown_inputs(SPECS, hosts)
    assert len(warnings) == 1, warnings
    assert "kubeflat_pod_cdir" in warnings[0] and "did you mean kubeflat_pod_cidr" in warnings[0]
    assert validate_inputs(SPECS, hosts) == []


def test_the_filters_take_a_list_of_hostvars_and_default_to_the_shipped_roles():
    hosts = [{"inventory_hostname": "cp1", "kubeflat_cni": "calico"},
             {"inventory_hostname": "w1", "kubeflat_pod_cdir": "x"}]
    assert kubeflat_input_errors(hosts) == [
        "kubeflat_cni='calico': value of kubeflat_cni must be one of: static, flannel, cilium, "
        "got: calico (hosts: cp1)"]
    assert "w1" in kubeflat_input_warnings(iter(hosts))[0]


def test_a_value_that_cannot_be_templated_is_reported():
    class Lazy(dict):
        def __getitem__(self, key):
            raise ValueError("'undefined_thing' is undefined")

    errors = validate_inputs(SPECS, {"cp1": Lazy(kubeflat_cni="{{ undefined_thing }}")})
    assert errors == ["kubeflat_cni=(template): cannot be templated: 'undefined_thing' is "
                      "undefined (hosts: cp1)"]


def _inventories():
    found = []
    for pattern in ("inventories/*", "tests/bench/inventories/*", "molecule/*/inventory"):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            if os.path.isdir(path) and not path.endswith(".rendered"):
                found.append(os.path.relpath(path, ROOT))
    return found


INVENTORIES = _inventories()


def _hostvars(inventory):
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[os.path.join(ROOT, inventory)])
    variables = VariableManager(loader=loader, inventory=manager)
    return {host.name: variables.get_vars(host=host, include_hostvars=False)
            for host in manager.get_hosts()}


def test_the_shipped_inventories_are_all_walked():
    assert {"inventories/lab", "inventories/sample", "tests/bench/inventories/fleet50",
            "molecule/routes/inventory"} <= set(INVENTORIES)


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_shipped_inventory_has_no_input_errors_or_warnings(inventory):
    hosts = _hostvars(inventory)
    assert hosts, inventory
    assert validate_inputs(SPECS, hosts) == []
    assert unknown_inputs(SPECS, hosts) == []


def test_loading_is_cached_and_sees_every_spec_file():
    paths = sorted(glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")))
    again = load_role_specs(paths=paths)
    assert again is load_role_specs(os.path.join(ROOT, "roles"))
    with open(paths[0]) as handle:
        assert yaml.safe_load(handle)["argument_specs"]
    assert kubeflat_inputs.PORT == ("int", 1, 65535)
