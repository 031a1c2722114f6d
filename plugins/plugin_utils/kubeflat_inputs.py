# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every role's inputs validated once, on the controller, in one call.

Ansible validates a role's ``meta/argument_specs.yml`` with an automatic task each time the
role runs, on every host, under every tag. The preflight instead calls
:func:`validate_inputs` once (filter ``kubeflat_input_errors``) with the variables of every
host; it uses Ansible's own ``ArgumentSpecValidator`` (the same types, choices, elements,
required and sub-options as the automatic task) and adds:

* strict types Ansible's conversion lets through: a list or mapping given to a ``str``/``path``
  option (Ansible would silently write ``"['a']"``) and a boolean given to an ``int`` option
  (Ansible would read ``true`` as 1);
* value rules argument_specs cannot express, as data in :data:`RULES` (ports, positive counts,
  prefix lengths, DNS labels and names, addresses, interface names). They are a table here,
  not custom keys in argument_specs, because ansible-lint's argument_specs schema refuses
  unknown keys (``additionalProperties: false``), although ansible-core ignores them.

Only variables that carry a role's prefix and that the role's spec knows are validated, and
only when a host defines them: an absent variable takes the role default, which the unit tests
validate against the spec once. Values come templated from ``hostvars``, except those that
hold nothing to template (:func:`untemplated`): those are read as they are, once per distinct
value, so a 1,000-app catalog shared through group_vars by every host is converted and validated
once, not templated once per host. The action plugin render_specs reads the catalog the same
way instead of having Ansible template it into its task arguments.

Cross-field rules (overlaps, adjacency, catalog references) stay in the cluster model and the
builders, which name the variable the same way.
"""

from __future__ import absolute_import, division, print_function

import difflib
import glob
import json
import os
import re
from collections.abc import Mapping

import yaml

try:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
except ImportError:  # pragma: no cover - ansible-core is a requirement of the controller
    ArgumentSpecValidator = None

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import parse_address, parse_network
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_envoy
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import EnvoyError, envoy_options
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_names import label_problem, name_problem

__metaclass__ = type

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PORT = ("int", 1, 65535)
# Variables with a role prefix that are not role options but are still known (not misspelt).
KNOWN_PATTERNS = (
    r"kubeflat_model",            # the fact the preflight sets
    r"kubeflat_kubeconfig",       # shared default of the CNI roles' kubeconfig options
    r"kubeflat_lab_\w+",          # the lab substrate (lab/)
    r"kubeflat_verify_\w+",       # playbooks/verify.yml
    r"kubeflat_reset_confirm",    # playbooks/reset.yml
)


def _envoy(value, var):
    try:
        envoy_options(value, var)
    except EnvoyError as exc:
        return exc
    return None


def _sans(value, var):
    try:
        parse_address(value, var)
        return None
    except InputError:
        reason = name_problem(value, wildcard=True)
        return reason and "neither an IPv4 address nor a DNS name: %s" % reason


def _ipv4(value, var):
    if value in ("", None):
        return None
    try:
        parse_address(value, var)
    except InputError as exc:
        return exc.reason
    return None


def _cidr(value, var):
    try:
        parse_network(value, var)
    except InputError as exc:
        return exc.reason
    return None


def _ifname(value, var):
    if not re.match(r"^[^\s/:]{1,15}$", str(value)):
        return "must be a Linux interface name (1-15 characters, no spaces, '/' or ':')"
    return None


def _abs_path(value, var):
    if value and not str(value).startswith("/"):
        return "must be an absolute path"
    return None


def _dns_name(value, var):
    return name_problem(value)


def _label(max_len):
    def check(value, var):
        return label_problem(value, max_len)
    check.max_len = max_len
    return check


# Value rules, by variable path: ``var``, ``var.sub`` (a mapping's key), ``var[]`` (each list
# element), ``var[].sub`` (a key of each list element). ``("int", low, high[, also])`` is a
# range (``also``: one more allowed value outside it); anything else is ``check(value, var)`` returning the reason (or an InputError) or None.
RULES = {
    # kubeflat: the model re-checks these with cross-field context; here they fail early.
    "kubeflat_cluster_name": _label(63),
    "kubeflat_cluster_domain": _dns_name,
    "kubeflat_node_pod_prefix": ("int", 1, 30),
    "kubeflat_apiserver_port": PORT,
    "kubeflat_apiserver_lb_port": PORT,
    "kubeflat_pod_cidr": _cidr,
    "kubeflat_service_cidr": _cidr,
    "kubeflat_host_networks[]": _cidr,
    "kubeflat_node_pod_cidr": _cidr,
    "kubeflat_node_address": _ipv4,
    "kubeflat_bgp_hold_time": ("int", 3, 65535),
    "kubeflat_bgp_keepalive_time": ("int", 1, 21845),
    "kubeflat_bgp_connect_retry_time": ("int", 1, 65535),
    "kubeflat_bgp_asn": ("int", 1, 4294967295),
    "kubeflat_bgp_router_id": _ipv4,
    "kubeflat_bgp_racks[].network": _cidr,
    "kubeflat_bgp_racks[].asn": ("int", 1, 4294967295),
    "kubeflat_bgp_peers[].address": _ipv4,
    "kubeflat_bgp_peers[].asn": ("int", 1, 4294967295),
    # app_specs / envoy_ingress: Namespaces are DNS labels; Envoy options as the builder says.
    "app_specs_namespace": _label(63),
    "app_specs_envoy_uid": ("int", 1, 2 ** 31 - 1),
    "app_specs_envoy": _envoy,
    "app_specs_apps_dir": _abs_path,
    "envoy_ingress_apps_dir": _abs_path,
    "envoy_ingress_namespace": _label(63),
    "envoy_ingress_app_namespace": _label(63),
    "envoy_ingress_envoy": _envoy,
    "envoy_ingress_listeners[].port": PORT,
    "envoy_ingress_listeners[].name": _label(15),
    "envoy_ingress_coredns_health_port": PORT,
    "envoy_ingress_coredns_ready_port": PORT,
    "envoy_ingress_coredns_metrics_port": PORT,
    "envoy_ingress_coredns_cache_seconds": ("int", 0, 3600),
    # cni_*: Helm release names are DNS labels of at most 53 (Helm's own limit).
    "cni_checks_post_retries": ("int", 1, 1000),
    "cni_checks_post_delay": ("int", 0, 3600),
    "cni_cilium_namespace": _label(63),
    "cni_cilium_release_name": _label(53),
    "cni_static_bridge": _ifname,
    "cni_static_mtu": ("int", 576, 9000, 0),        # 0: the plugin's default
    "cni_static_plugin_dir": _abs_path,
    "cni_static_conf_dir": _abs_path,
    "cni_static_sysctl_file": _abs_path,
    "cni_flannel_cni_bin_dir": _abs_path,
    "cni_checks_conf_dir": _abs_path,
    "cni_checks_bin_dirs[]": _abs_path,
    # kubeadm / talos: SANs end up in the API server certificate, interfaces in the kernel.
    "kubeadm_cert_sans[]": _sans,
    "kubeadm_lb_admin_port": PORT,
    "kubeadm_config_dir": _abs_path,
    "talos_cert_sans[]": _sans,
    "talos_interface": _ifname,
    "talos_gateway": _ipv4,
    "talos_nameservers[]": _ipv4,
    "talos_install_disk": _abs_path,
    "outside_routes_persist_path": _abs_path,
}
# The Envoy options' ranges, named per key (the builder's own table, so they cannot drift).
for _key in getattr(kubeflat_envoy, "_PORT_KEYS", ()):
    RULES["app_specs_envoy." + _key] = PORT
for _key, (_low, _high) in getattr(kubeflat_envoy, "_INT_RANGES", {}).items():
    RULES["app_specs_envoy." + _key] = ("int", _low, _high)


# --- values that need no templating ------------------------------------------------------

# Types of data loaded from YAML or JSON, plain or as Ansible's data tagging wraps them (by the
# tagged class's name, so nothing private is imported). Any other type (a lazy template
# container, a vaulted string, a date, an undefined marker) is left to Ansible's templating.
_DATA_TYPES = (str, bool, int, float, type(None), dict, list)
_TAGGED_NAMES = frozenset("_AnsibleTagged" + kind
                          for kind in ("Str", "Int", "Float", "Dict", "List"))
# Jinja's start strings (Ansible's defaults; only a "#jinja2:" header can change them).
_TEMPLATE_MARKS = ("{{", "{%", "{#")
# A whole string that is one variable, optionally with a literal default: templating it yields
# that variable's value when it is defined (``default`` only acts on undefined values).
_ALIAS = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*"
                    r"(?:\|\s*default\(\s*(?:\[\]|\{\}|'[^',\\]*'|\"[^\",\\]*\"|-?\d+)\s*\)\s*)?"
                    r"\}\}\Z")
_ALIAS_DEPTH = 5
_JINJA_LITERALS = frozenset(("true", "false", "none", "True", "False", "None"))


def template_free(value):
    """True when ``value`` is YAML/JSON data in which Ansible finds nothing to template.

    Every string (keys too) lacks ``{{``, ``{%``, ``{#`` and a ``#jinja2:`` header, every
    item has a data type (plain or tagged ``str``/``int``/``float``/``bool``/``None``/``dict``/
    ``list``) and every mapping key is a string. Ansible returns such data unchanged when it
    templates it (a string that is not possibly a template is returned as it is). False
    means only: let Ansible template it.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        tagged = kind.__name__ in _TAGGED_NAMES and isinstance(item, _DATA_TYPES)
        if kind not in _DATA_TYPES and not tagged:
            return False
        if isinstance(item, str):
            if item.startswith("#jinja2:") or any(mark in item for mark in _TEMPLATE_MARKS):
                return False
        elif isinstance(item, dict):
            keys = list(item.keys())
            if not all(isinstance(key, str) for key in keys):
                return False  # e.g. YAML's `on:` key is True: JSON and sorting want strings
            stack.extend(keys)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def untemplated(value, variables=None, trusted=None, plain=True):
    """``(True, value)`` when ``value`` needs no templating, else ``(False, None)``.

    Template-free data (:func:`template_free`) is returned as plain JSON data (with
    ``plain=False``: as it is, possibly tagged; its JSON text is the same). A string that is
    exactly one variable, ``{{ name }}`` or ``{{ name | default(<literal>) }}``, with ``name``
    in ``variables`` and ``trusted(value)`` true (Ansible templates only trusted strings), is
    followed to that variable's raw value (a few levels deep) and the same applies to it. Any
    other case returns ``(False, None)``: the caller templates ``value`` itself, so a value
    that does not resolve here gets exactly Ansible's meaning, error messages included.
    """
    for _level in range(_ALIAS_DEPTH):
        if template_free(value):
            return True, plain_data(value) if plain else value
        match = _ALIAS.match(value) if isinstance(value, str) else None
        if not match or match.group(1) in _JINJA_LITERALS or variables is None \
                or match.group(1) not in variables or trusted is None or not trusted(value):
            return False, None
        value = variables[match.group(1)]
    return False, None


def plain_data(value):
    """Template-free (possibly tagged) data as plain JSON types."""
    return json.loads(json.dumps(value))


# --- loading -------------------------------------------------------------------------------

_CACHE = {}


def _yaml(path):
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return yaml.load(handle, Loader=_LOADER)  # nosec - CSafeLoader/SafeLoader


def load_role_specs(roles_dir=None, paths=None):
    """Every role's argument specs: ``{role: {"prefix", "entry_points", "options",
    "required", "defaults", "vars"}}``.

    ``paths`` are ``roles/<role>/meta/argument_specs.yml`` files; by default every such file
    under ``roles_dir``. ``options`` merges the entry points (an option shared by two entry
    points has one spec); ``required`` are the ``main`` options marked required. Cached per
    set of files and their modification times, so a preflight pays for YAML parsing once.
    """
    if paths is None:
        paths = sorted(glob.glob(os.path.join(roles_dir, "*", "meta", "argument_specs.yml")))
    key = tuple((p, os.path.getmtime(p)) for p in paths)
    if key in _CACHE:
        return _CACHE[key]
    specs = {}
    for path in paths:
        role_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        role = os.path.basename(role_dir)
        entry_points = (_yaml(path) or {}).get("argument_specs") or {}
        options = {}
        for entry in entry_points.values():
            for name, spec in ((entry or {}).get("options") or {}).items():
                options.setdefault(name, spec)
        main = (entry_points.get("main") or {}).get("options") or {}
        specs[role] = {
            "prefix": role + "_",
            "entry_points": entry_points,
            "options": options,
            "required": sorted(n for n, s in main.items() if s.get("required")),
            "defaults": _yaml(os.path.join(role_dir, "defaults", "main.yml")) or {},
            "vars": _yaml(os.path.join(role_dir, "vars", "main.yml")) or {},
        }
    _CACHE.clear()
    _CACHE[key] = specs
    return specs


# --- validation of one variable ------------------------------------------------------------

def _plain(value):
    """Ansible's lazy/tagged values -> plain JSON types (templating them on the way)."""
    return json.loads(json.dumps(value, default=str))


def _strict_type(spec, value):
    """Why Ansible's conversion would accept ``value`` for ``spec`` although it is wrong."""
    kind = spec.get("type", "str")
    if value is None:
        return None
    if kind in ("str", "path") and isinstance(value, (list, dict)):
        return "must be a string, got a %s" % type(value).__name__
    if kind == "int" and isinstance(value, bool):
        return "must be an integer, got a boolean"
    if kind == "dict" and spec.get("options") and not isinstance(value, (dict, str)):
        # ansible-core's sub-option check raises TypeError on these instead of refusing them
        return "must be a mapping, got a %s" % type(value).__name__
    if kind == "list" and spec.get("elements") in ("str", "path") and isinstance(value, list):
        for item in value:
            if isinstance(item, (list, dict)):
                return "must be a list of strings, got an element %r" % (item,)
    if kind == "list" and spec.get("elements") == "int" and isinstance(value, list):
        if any(isinstance(item, bool) for item in value):
            return "must be a list of integers, got a boolean element"
    for sub_name, sub_spec in (spec.get("options") or {}).items():
        items = value if kind == "list" and isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and sub_name in item:
                reason = _strict_type(sub_spec, item[sub_name])
                if reason:
                    return "%s: %s" % (sub_name, reason)
    return None


def _rule_problems(name, value):
    """[(path, value, reason)] from :data:`RULES` for an already type-checked value."""
    out = []
    for path, rule in _rules_for(name):
        for where, item in _walk(path, name, value):
            reason = _apply(rule, item, where)
            if isinstance(reason, InputError):
                out.append((reason.var, reason.value, reason.reason))
            elif reason:
                out.append((where, item, reason))
    return out


_RULES_BY_VAR = {}
for _path, _rule in RULES.items():
    _RULES_BY_VAR.setdefault(re.split(r"[.\[]", _path, 1)[0], []).append((_path, _rule))


def _rules_for(name):
    return _RULES_BY_VAR.get(name, [])


def _walk(path, name, value):
    """(variable path, value) pairs a rule path selects in ``value``."""
    rest = path[len(name):]
    items = [(name, value)]
    for part in re.findall(r"\[\]|\.[A-Za-z0-9_]+", rest):
        nxt = []
        for where, item in items:
            if part == "[]" and isinstance(item, list):
                nxt += [("%s[%d]" % (where, i), x) for i, x in enumerate(item)]
            elif part.startswith(".") and isinstance(item, dict) and part[1:] in item:
                nxt.append((where + part, item[part[1:]]))
        items = nxt
    return [(w, v) for w, v in items if v is not None]


def _apply(rule, value, where):
    if isinstance(rule, tuple) and rule[0] == "int":
        low, high = rule[1], rule[2]
        if isinstance(value, bool):
            return "must be an integer"
        try:
            number = int(value)
        except (TypeError, ValueError):
            return "must be an integer"
        if str(number) != str(value).strip():
            return "must be an integer"
        if not low <= number <= high and number not in rule[3:]:
            return "must be between %d and %d%s" % (
                low, high, "".join(" or %d" % also for also in rule[3:]))
        return None
    return rule(value, where)


def _show(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_variable(name, spec, value):
    """Problems of one variable's value: ``[(path, value, reason)]`` (empty when valid)."""
    reason = _strict_type(spec, value)
    if reason:
        return [(name, value, reason)]
    try:
        result = ArgumentSpecValidator({name: spec}).validate({name: value})
    except (TypeError, ValueError, AttributeError) as exc:  # ansible-core crashing on a value
        return [(name, value, "cannot be validated (%s)" % exc)]
    if result.error_messages:
        return [(name, value, msg) for msg in result.error_messages]
    if value is None:
        return []
    # Rules read the value as given (sub-option defaults filled in by the validator would
    # make messages name values the user never wrote); they convert numbers themselves.
    return _rule_problems(name, value)


# --- all hosts -----------------------------------------------------------------------------

def _hosts(hosts_vars):
    """``{name: vars}`` from a mapping of host -> vars or a list of hostvars."""
    if isinstance(hosts_vars, dict) or hasattr(hosts_vars, "keys"):
        return [(str(name), hosts_vars[name]) for name in hosts_vars.keys()]
    return [(str(hv.get("inventory_hostname", "host %d" % i)), hv)
            for i, hv in enumerate(hosts_vars)]


def _host_list(names, limit=6):
    names = sorted(names)
    if len(names) <= limit:
        return ", ".join(names)
    return "%s and %d more" % (", ".join(names[:limit]), len(names) - limit)


def _owner(specs, name):
    for role, spec in specs.items():
        if name.startswith(spec["prefix"]):
            return role
    return None


def _host_value(hv, raw, name, shared):
    """``(plain value, canonical JSON)`` of variable ``name`` on one host.

    ``raw`` is the host's untemplated variables (or None). A raw value that needs no templating
    is converted once per distinct object (``shared``: id -> (object, value, canonical), the
    object kept so its id stays unique); anything else is templated through ``hv``.
    """
    if raw is not None and name in raw:
        item = raw[name]
        hit = shared.get(id(item))
        if hit is not None and hit[0] is item:
            return hit[1], hit[2]
        found, value = untemplated(item)
        if found:
            canonical = json.dumps(value, sort_keys=True)
            shared[id(item)] = (item, value, canonical)
            return value, canonical
    value = _plain(hv[name])
    return value, json.dumps(value, sort_keys=True)


def validate_inputs(specs, hosts_vars, raw_vars=None):
    """Errors in every host's role inputs: a sorted list of ``var=value: reason (hosts: ...)``.

    ``specs`` is :func:`load_role_specs`; ``hosts_vars`` maps host -> its variables (or is a
    list of hostvars with ``inventory_hostname``). ``raw_vars`` (optional) maps a host name to
    its untemplated variables (``hostvars.raw_get``): a value there that needs no templating is
    read as it is, once per distinct value, instead of templating ``hosts_vars[host][name]``.
    The same value on many hosts (group_vars) is validated once and reported once, naming the
    hosts.
    """
    seen = {}       # (name, canonical value) -> problems
    found = {}      # (path, shown value, reason) -> set of hosts
    shared = {}     # id(raw value) -> (raw value, plain value, canonical value)
    for host, hv in _hosts(hosts_vars):
        raw = raw_vars(host) if raw_vars is not None else None
        if not isinstance(raw, Mapping):  # e.g. Ansible's undefined marker for a missing host
            raw = None
        for spec in specs.values():
            for name, opt in spec["options"].items():
                if name not in hv:
                    if name in spec["required"] and name not in spec["defaults"]:
                        found.setdefault((name, "(unset)", "required, but not set"),
                                         set()).add(host)
                    continue
                # Any templating error of the value is reported as a problem of that variable.
                try:
                    value, canonical = _host_value(hv, raw, name, shared)
                except Exception as exc:  # pylint: disable=broad-except
                    found.setdefault((name, "(template)", "cannot be templated: %s" % exc),
                                     set()).add(host)
                    continue
                key = (name, canonical)
                if key not in seen:
                    seen[key] = check_variable(name, opt, value)
                for path, bad, reason in seen[key]:
                    found.setdefault((path, _show(bad), reason), set()).add(host)
    return ["%s=%s: %s (hosts: %s)" % (path, shown, reason, _host_list(hosts))
            for (path, shown, reason), hosts in sorted(found.items())]


def _known(specs):
    known = set()
    for spec in specs.values():
        known.update(spec["options"], spec["defaults"], spec["vars"])
    return known


def unknown_inputs(specs, hosts_vars):
    """Warnings for variables with a role prefix that no role knows (probably misspelt)."""
    known = _known(specs)
    extra = re.compile("^(%s)$" % "|".join(KNOWN_PATTERNS))
    found = {}
    for host, hv in _hosts(hosts_vars):
        for name in hv.keys():
            if name in known or not _owner(specs, name) or extra.match(name):
                continue
            found.setdefault(name, set()).add(host)
    out = []
    for name, hosts in sorted(found.items()):
        close = difflib.get_close_matches(name, known, 1)
        hint = "; did you mean %s?" % close[0] if close else ""
        out.append("%s is set (hosts: %s) but role %s has no such option%s"
                   % (name, _host_list(hosts), _owner(specs, name), hint))
    return out
