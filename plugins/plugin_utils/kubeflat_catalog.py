# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app catalog (``app_specs_apps``) and the ``app_specs_*`` settings, validated and
normalised: every entry checked, defaults filled in, and each app's ``calls`` resolved into
upstreams (headless Service name, port, local Envoy port, health path).

Catalog entry (``app_specs_apps`` item; only ``name``, ``image`` and ``ports`` are required)::

    name: api                      # DNS label, <= 40 chars (Deployment/ConfigMap suffixes)
    namespace: apps                # default: app_specs_namespace
    image: registry.example/api:1.4.2
    replicas: 2
    ports: [{name: http, port: 8080}]          # the first port is what callers reach
    resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 256Mi}}
    probes:
      readiness: {path: /ready}    # http GET on the first port unless port: is given
      liveness: {path: /healthz, initial_delay_seconds: 10}
    config: {any: yaml mapping}    # one env var (app_specs_config_env) holding this as YAML
    calls: [db-proxy, {app: auth, namespace: sso, local_port: 15010}]
    memory_spread: {deployments: 3, step: 64Mi}   # N Deployments, stepped memory limits
    ingress: [{host: api.example.com, path: /, listener: http}]
    termination_grace_period_seconds: 30
    pre_stop_sleep_seconds: 10
    envoy: {retries: 2}            # per-app overrides of app_specs_envoy

Everything invalid raises :class:`SpecError` naming the variable (``app_specs_apps[api].replicas``).
"""

from __future__ import absolute_import, division, print_function

import re

import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import (
    EnvoyError, cluster_resolvers, envoy_options, headless_name)
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import dump_yaml
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import (
    SpecError, parse_memory, spec_int, spec_label, spec_port, spec_resources, with_defaults)

__metaclass__ = type

SETTINGS_DEFAULTS = {
    "namespace": "apps",
    "config_env": "APP_CONFIG",
    "envoy": {},
    "envoy_image": "docker.io/envoyproxy/envoy:v1.40.0",
    "envoy_uid": 101,
    "envoy_resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"memory": "128Mi"}},
    # {app: time} of the last app_specs_restart (kubeflat_restart.py): the restart annotation.
    "restarts": {},
}

APP_KEYS = {"name", "namespace", "image", "replicas", "ports", "resources", "probes", "config",
            "calls", "memory_spread", "ingress", "termination_grace_period_seconds",
            "pre_stop_sleep_seconds", "envoy"}
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(r"^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$")


def _probe(value, var, ports):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError(var, value, "must be a mapping (path, port, ...)")
    allowed = {"path", "port", "initial_delay_seconds", "period_seconds", "timeout_seconds",
               "failure_threshold"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SpecError("%s.%s" % (var, unknown[0]), value[unknown[0]],
                        "unknown probe option (known: %s)" % ", ".join(sorted(allowed)))
    port = value.get("port", ports[0]["name"])
    names = {p["name"]: p["port"] for p in ports}
    if isinstance(port, str) and not port.isdigit():
        if port not in names:
            raise SpecError("%s.port" % var, port, "not one of the app's port names %s"
                            % ", ".join(sorted(names)))
    else:
        port = spec_port(port, "%s.port" % var)
    path = value.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise SpecError("%s.path" % var, path, "must be an absolute HTTP path")
    probe = {"path": path, "port": port,
             "initial_delay_seconds": spec_int(value.get("initial_delay_seconds", 0),
                                               "%s.initial_delay_seconds" % var, 0, 3600),
             "period_seconds": spec_int(value.get("period_seconds", 5),
                                        "%s.period_seconds" % var, 1, 3600),
             "timeout_seconds": spec_int(value.get("timeout_seconds", 1),
                                         "%s.timeout_seconds" % var, 1, 3600),
             "failure_threshold": spec_int(value.get("failure_threshold", 3),
                                           "%s.failure_threshold" % var, 1, 100)}
    if probe["timeout_seconds"] > probe["period_seconds"]:
        raise SpecError("%s.timeout_seconds" % var, probe["timeout_seconds"],
                        "longer than period_seconds %d" % probe["period_seconds"])
    return probe


# --- settings -----------------------------------------------------------------------------

def spec_settings(raw=None):
    """Validate the role-level settings (``app_specs_*``) and fill in defaults."""
    cfg = with_defaults(raw, SETTINGS_DEFAULTS, "app_specs_")
    spec_label(cfg["namespace"], "app_specs_namespace")
    if not isinstance(cfg["config_env"], str) or not _ENV_NAME.match(cfg["config_env"]):
        raise SpecError("app_specs_config_env", cfg["config_env"],
                        "must be an environment variable name")
    if not isinstance(cfg["envoy_image"], str) or not cfg["envoy_image"].strip() \
            or " " in cfg["envoy_image"]:
        raise SpecError("app_specs_envoy_image", cfg["envoy_image"], "must be an image reference")
    cfg["envoy_uid"] = spec_int(cfg["envoy_uid"], "app_specs_envoy_uid", 1, 2 ** 31 - 1)
    cfg["envoy_resources"] = spec_resources(cfg["envoy_resources"], "app_specs_envoy_resources")
    if not isinstance(cfg["restarts"], dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in cfg["restarts"].items()):
        raise SpecError("app_specs_restart", cfg["restarts"], "restart record must map app "
                        "names to times (kubeflat_restart.restart_record)")
    try:
        envoy_options(cfg["envoy"], "app_specs_envoy")
    except EnvoyError as exc:
        raise SpecError(exc.var, exc.value, exc.reason)
    return cfg


def _app(raw, index, settings):
    if not isinstance(raw, dict):
        raise SpecError("app_specs_apps[%d]" % index, raw, "must be a mapping")
    name = raw.get("name")
    var = "app_specs_apps[%s]" % (name if isinstance(name, str) and name else index)
    spec_label(name, var + ".name", 40)
    unknown = sorted(set(raw) - APP_KEYS)
    if unknown:
        raise SpecError("%s.%s" % (var, unknown[0]), raw[unknown[0]],
                        "unknown key (known: %s)" % ", ".join(sorted(APP_KEYS)))
    app = {"name": name}
    app["namespace"] = spec_label(raw.get("namespace") or settings["namespace"], var + ".namespace")
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise SpecError(var + ".image", image, "must be an image reference (registry/name:tag)")
    app["image"] = image
    app["replicas"] = spec_int(raw.get("replicas", 1), var + ".replicas", 0, 1000)

    app["ports"] = _ports(raw, var)

    app["resources"] = spec_resources(raw.get("resources"), var + ".resources")
    probes = raw.get("probes") or {}
    if not isinstance(probes, dict) or set(probes) - {"readiness", "liveness"}:
        raise SpecError(var + ".probes", probes, "must be a mapping with readiness/liveness")
    app["probes"] = {kind: _probe(probes.get(kind), "%s.probes.%s" % (var, kind), app["ports"])
                     for kind in ("readiness", "liveness")}
    config = raw.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise SpecError(var + ".config", config, "must be a YAML mapping")
    try:
        app["config_yaml"] = dump_yaml(config)
    except yaml.YAMLError as exc:
        raise SpecError(var + ".config", config, "cannot be written as YAML (%s)" % exc)

    app["calls"] = _calls(raw, var)
    app["memory_spread"] = _memory_spread(raw, var, app)
    app["ingress"] = _ingress(raw, var)

    app["termination_grace_period_seconds"] = spec_int(
        raw.get("termination_grace_period_seconds", 30),
        var + ".termination_grace_period_seconds", 1, 3600)
    app["pre_stop_sleep_seconds"] = spec_int(raw.get("pre_stop_sleep_seconds", 10),
                                             var + ".pre_stop_sleep_seconds", 0, 3600)
    if app["pre_stop_sleep_seconds"] >= app["termination_grace_period_seconds"]:
        raise SpecError(var + ".pre_stop_sleep_seconds", app["pre_stop_sleep_seconds"],
                        "must be shorter than termination_grace_period_seconds %d"
                        % app["termination_grace_period_seconds"])
    overrides = raw.get("envoy") or {}
    raw_envoy = dict(settings["envoy"] or {})
    if not isinstance(overrides, dict):
        raise SpecError(var + ".envoy", overrides, "must be a mapping of Envoy options")
    raw_envoy.update(overrides)
    try:
        app["envoy"] = envoy_options(raw_envoy, var + ".envoy")
    except EnvoyError as exc:
        raise SpecError(exc.var, exc.value, exc.reason)
    app["var"] = var
    return app


def _ports(raw, var):
    """``ports``: [{name, port}], names and numbers unique."""
    ports = raw.get("ports")
    if not isinstance(ports, list) or not ports:
        raise SpecError(var + ".ports", ports, "must be a non-empty list of {name, port}")
    out = []
    for i, entry in enumerate(ports):
        pvar = "%s.ports[%d]" % (var, i)
        if not isinstance(entry, dict) or set(entry) - {"name", "port"}:
            raise SpecError(pvar, entry, "must be a mapping {name, port}")
        pname = entry.get("name")
        if not isinstance(pname, str) or not _PORT_NAME.match(pname) or len(pname) > 15 \
                or not re.search("[a-z]", pname):
            raise SpecError(pvar + ".name", pname, "must be an IANA service name (lower case "
                                                   "letters, digits, '-', at most 15)")
        port = spec_port(entry.get("port"), pvar + ".port")
        for other in out:
            if other["name"] == pname or other["port"] == port:
                raise SpecError(pvar, entry, "duplicates port %s/%d"
                                % (other["name"], other["port"]))
        out.append({"name": pname, "port": port})
    return out


def _calls(raw, var):
    """``calls``: [{app, namespace, port, local_port, var}], resolved by validate_catalog."""
    calls = raw.get("calls") or []
    if not isinstance(calls, list):
        raise SpecError(var + ".calls", calls, "must be a list of app names or {app, ...}")
    out = []
    for i, call in enumerate(calls):
        cvar = "%s.calls[%d]" % (var, i)
        if isinstance(call, str):
            call = {"app": call}
        if not isinstance(call, dict) or "app" not in call or \
                set(call) - {"app", "namespace", "port", "local_port"}:
            raise SpecError(cvar, call, "must be an app name or {app, namespace, port, "
                                        "local_port}")
        out.append({"app": call["app"], "namespace": call.get("namespace"),
                    "port": call.get("port"), "local_port": call.get("local_port"),
                    "var": cvar})
    return out


def _memory_spread(raw, var, app):
    """``memory_spread``: N Deployments with stepped memory limits (None: one Deployment)."""
    spread = raw.get("memory_spread")
    if spread is None:
        return None
    svar = var + ".memory_spread"
    if not isinstance(spread, dict) or set(spread) - {"deployments", "step"}:
        raise SpecError(svar, spread, "must be a mapping {deployments, step}")
    count = spec_int(spread.get("deployments", 2), svar + ".deployments", 2, 10)
    step = parse_memory(spread.get("step"), svar + ".step")
    if "memory" not in app["resources"].get("limits", {}):
        raise SpecError(var + ".resources.limits.memory", None,
                        "memory_spread needs a base memory limit")
    if app["replicas"] and app["replicas"] < count:
        raise SpecError(svar + ".deployments", count,
                        "more Deployments than replicas (%d)" % app["replicas"])
    return {"deployments": count, "step": step}


def _ingress(raw, var):
    """``ingress``: [{host, path, listener, var}] routes to this app."""
    ingress = raw.get("ingress") or []
    if not isinstance(ingress, list):
        raise SpecError(var + ".ingress", ingress, "must be a list of {host, path, listener}")
    out = []
    for i, entry in enumerate(ingress):
        ivar = "%s.ingress[%d]" % (var, i)
        if not isinstance(entry, dict) or set(entry) - {"host", "path", "listener"}:
            raise SpecError(ivar, entry, "must be a mapping {host, path, listener}")
        host = entry.get("host", "*")
        if not isinstance(host, str) or not _HOSTNAME.match(host) or len(host) > 253 \
                or any(len(label) > 63 for label in host.split(".")):
            raise SpecError(ivar + ".host", host, "must be a host name, *.domain or * (DNS "
                            "labels of at most 63 characters, at most 253 in all)")
        path = entry.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/"):
            raise SpecError(ivar + ".path", path, "must be a path prefix starting with /")
        out.append({"host": host, "path": path, "listener": entry.get("listener"),
                    "var": ivar})
    return out


def validate_catalog(apps, settings, model):
    """Validate every catalog entry and resolve calls into upstreams.

    Returns the normalised apps (sorted by namespace, name); each has ``upstreams``:
    ``[{"service", "namespace", "host", "port", "local_port", "health_path", "env"}]``.
    """
    if apps is None:
        apps = []
    if not isinstance(apps, list):
        raise SpecError("app_specs_apps", apps, "must be a list of apps")
    domain = model["cluster_domain"]
    resolvers = cluster_resolvers(model)
    out = [_app(raw, i, settings) for i, raw in enumerate(apps)]
    by_key = {}
    for app in out:
        key = (app["namespace"], app["name"])
        if key in by_key:
            raise SpecError(app["var"] + ".name", app["name"],
                            "defined twice in namespace %s" % app["namespace"])
        by_key[key] = app
    routes_seen = {}
    for app in out:
        opts = app["envoy"]
        upstreams = []
        next_port = opts["first_local_port"]
        used_local = {opts["admin_port"]: "the Envoy admin port"}
        used_local.update({p["port"]: "the app's port %s" % p["name"] for p in app["ports"]})
        for call in app["calls"]:
            target_ns = call["namespace"] or app["namespace"]
            target = by_key.get((target_ns, call["app"]))
            if target is None:
                raise SpecError(call["var"], call["app"], "no app %s in namespace %s in "
                                "app_specs_apps" % (call["app"], target_ns))
            if target is app:
                raise SpecError(call["var"], call["app"], "an app cannot call itself")
            if any(u["service"] == target["name"] and u["namespace"] == target_ns
                   for u in upstreams):
                raise SpecError(call["var"], call["app"], "called twice")
            port = target["ports"][0]
            if call["port"] is not None:
                match = [p for p in target["ports"]
                         if call["port"] in (p["name"], p["port"])]
                if not match:
                    raise SpecError(call["var"] + ".port", call["port"],
                                    "not a port of %s" % target["name"])
                port = match[0]
            if call["local_port"] is None:
                while next_port in used_local:
                    next_port += 1
                local_port = spec_port(next_port, call["var"] + ".local_port")
            else:
                local_port = spec_port(call["local_port"], call["var"] + ".local_port")
            if local_port in used_local:
                raise SpecError(call["var"] + ".local_port", local_port,
                                "already used by %s" % used_local[local_port])
            used_local[local_port] = "the upstream %s" % target["name"]
            readiness = target["probes"]["readiness"]
            health_path = readiness["path"] if readiness and readiness["port"] in (
                port["name"], port["port"]) else None
            upstreams.append({
                "service": target["name"], "namespace": target_ns,
                "host": headless_name(target["name"], target_ns, domain),
                "port": port["port"], "local_port": local_port, "health_path": health_path,
                "env": "UPSTREAM_%s_URL" % target["name"].upper().replace("-", "_"),
                "resolvers": resolvers,
            })
        app["upstreams"] = upstreams
        for entry in app["ingress"]:
            key = (entry["listener"], entry["host"], entry["path"])
            if key in routes_seen:
                raise SpecError(entry["var"], "%s%s" % (entry["host"], entry["path"]),
                                "already routed to %s" % routes_seen[key])
            routes_seen[key] = app["var"]
    out.sort(key=lambda a: (a["namespace"], a["name"]))
    return out


__all__ = ["SETTINGS_DEFAULTS", "APP_KEYS", "spec_settings", "validate_catalog"]
