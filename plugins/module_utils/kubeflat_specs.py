# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""App catalog -> Kubernetes manifests and Envoy configs, built as data.

Pure functions: the catalog (``app_specs_apps``), a few settings and the cluster model
(``kubeflat_model``) in, ``{relative path: file text}`` out. Serialisation is deterministic
(sorted keys, fixed style), so a re-render of the same inputs is byte-identical.

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

try:
    from ansible.module_utils.kubeflat_errors import InputError
except ImportError:  # unit tests and controller-side plugins import it directly
    from kubeflat_errors import InputError  # type: ignore

import hashlib
import re

import yaml

try:
    from ansible.module_utils.kubeflat_envoy import (
        EnvoyError, check_port, cluster_name, envoy_options, headless_name, ingress_bootstrap,
        outside_balancer_bootstrap, sidecar_bootstrap, cluster_resolvers, ingress_pre_stop,
        ingress_drain_seconds)
    from ansible.module_utils.kubeflat_restart import restart_annotations
except ImportError:  # unit tests and controller-side plugins import it directly
    from kubeflat_envoy import (  # type: ignore
        EnvoyError, check_port, cluster_name, envoy_options, headless_name, ingress_bootstrap,
        outside_balancer_bootstrap, sidecar_bootstrap, cluster_resolvers, ingress_pre_stop,
        ingress_drain_seconds)
    from kubeflat_restart import restart_annotations  # type: ignore

__metaclass__ = type

MANAGED_BY = {"app.kubernetes.io/managed-by": "kubeflat"}
NAME_LABEL = "app.kubernetes.io/name"
DEPLOYMENT_LABEL = "kubeflat.io/deployment"
TIER_LABEL = "kubeflat.io/memory-tier"
CHECKSUM_ANNOTATION = "kubeflat.io/config-checksum"
ENVOY_CONFIG_PATH = "/etc/envoy/envoy.yaml"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"

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
INGRESS_DEFAULTS = {
    "namespace": "kubeflat-ingress",
    "listeners": [{"name": "http", "port": 80}],
    "on_control_planes": True,
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
}
COREDNS_DEFAULTS = {
    "image": "registry.k8s.io/coredns/coredns:v1.12.1",
    "replace_service": True,
    "health_port": 8080,
    "ready_port": 8181,
    "metrics_port": 9153,
    "cache_seconds": 30,
    "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
}

APP_KEYS = {"name", "namespace", "image", "replicas", "ports", "resources", "probes", "config",
            "calls", "memory_spread", "ingress", "termination_grace_period_seconds",
            "pre_stop_sleep_seconds", "envoy"}
_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(r"^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$")
_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_CPU = re.compile(r"^(\d+m|\d+(\.\d{1,3})?)$")
_MEMORY_UNITS = {None: 1, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4,
                 "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}


class SpecError(InputError):
    """An invalid catalog entry or setting; the message names the variable."""


# --- serialisation ------------------------------------------------------------------------

class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Safe dumper that writes multi-line strings (embedded configs) as literal blocks."""


def _str_representer(dumper, data):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(doc):
    """One YAML document, deterministic (sorted keys, block style, no line folding)."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     width=1 << 16, allow_unicode=True)


def dump_all(docs):
    """Several documents as one multi-document YAML file."""
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                         width=1 << 16, allow_unicode=True, explicit_start=True)


def content_hash(text, length=10):
    """Short sha256 of a text (used in immutable ConfigMap names and checksums)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# --- small validators ---------------------------------------------------------------------

def _int(value, var, low, high):
    if isinstance(value, bool):
        raise SpecError(var, value, "must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SpecError(var, value, "must be an integer")
    if str(number) != str(value).strip():
        raise SpecError(var, value, "must be an integer")
    if not low <= number <= high:
        raise SpecError(var, value, "must be between %d and %d" % (low, high))
    return number


def _port(value, var):
    try:
        return check_port(value, var)
    except EnvoyError as exc:
        raise SpecError(exc.var, exc.value, exc.reason)


def _label(value, var, max_len=63):
    if not isinstance(value, str) or not _LABEL.match(value) or len(value) > max_len:
        raise SpecError(var, value, "must be a DNS label: lower case letters, digits and '-', "
                                    "starting with a letter, at most %d characters" % max_len)
    return value


def parse_memory(value, var):
    """A Kubernetes memory quantity (``256Mi``, ``1G``, ``1048576``) -> bytes."""
    match = _MEMORY.match(str(value).strip()) if not isinstance(value, bool) else None
    if not match:
        raise SpecError(var, value, "must be a memory quantity like 256Mi or 1Gi")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def format_memory(size):
    """Bytes -> the largest exact binary unit (``268435456`` -> ``256Mi``)."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if size and size % _MEMORY_UNITS[unit] == 0:
            return "%d%s" % (size // _MEMORY_UNITS[unit], unit)
    return str(size)


def _resources(value, var):
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"requests", "limits"}:
        raise SpecError(var, value, "must be a mapping with requests and/or limits")
    out = {}
    for part in ("requests", "limits"):
        spec = value.get(part) or {}
        if not isinstance(spec, dict) or set(spec) - {"cpu", "memory"}:
            raise SpecError("%s.%s" % (var, part), spec, "must map cpu and/or memory")
        entry = {}
        if "cpu" in spec:
            if not _CPU.match(str(spec["cpu"])) or isinstance(spec["cpu"], bool):
                raise SpecError("%s.%s.cpu" % (var, part), spec["cpu"],
                                "must be a CPU quantity like 250m or 1")
            entry["cpu"] = str(spec["cpu"])
        if "memory" in spec:
            entry["memory"] = format_memory(parse_memory(spec["memory"],
                                                         "%s.%s.memory" % (var, part)))
        if entry:
            out[part] = entry
    req, lim = out.get("requests", {}), out.get("limits", {})
    if "memory" in req and "memory" in lim and \
            parse_memory(req["memory"], var) > parse_memory(lim["memory"], var):
        raise SpecError("%s.requests.memory" % var, req["memory"],
                        "larger than limits.memory %s" % lim["memory"])
    return out


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
        port = _port(port, "%s.port" % var)
    path = value.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise SpecError("%s.path" % var, path, "must be an absolute HTTP path")
    probe = {"path": path, "port": port,
             "initial_delay_seconds": _int(value.get("initial_delay_seconds", 0),
                                           "%s.initial_delay_seconds" % var, 0, 3600),
             "period_seconds": _int(value.get("period_seconds", 5),
                                    "%s.period_seconds" % var, 1, 3600),
             "timeout_seconds": _int(value.get("timeout_seconds", 1),
                                     "%s.timeout_seconds" % var, 1, 3600),
             "failure_threshold": _int(value.get("failure_threshold", 3),
                                       "%s.failure_threshold" % var, 1, 100)}
    if probe["timeout_seconds"] > probe["period_seconds"]:
        raise SpecError("%s.timeout_seconds" % var, probe["timeout_seconds"],
                        "longer than period_seconds %d" % probe["period_seconds"])
    return probe


# --- settings -----------------------------------------------------------------------------

def spec_settings(raw=None):
    """Validate the role-level settings (``app_specs_*``) and fill in defaults."""
    cfg = dict(SETTINGS_DEFAULTS)
    cfg.update({k: v for k, v in (raw or {}).items() if v is not None})
    unknown = sorted(set(cfg) - set(SETTINGS_DEFAULTS))
    if unknown:
        raise SpecError("app_specs_" + unknown[0], cfg[unknown[0]], "unknown setting")
    _label(cfg["namespace"], "app_specs_namespace")
    if not isinstance(cfg["config_env"], str) or not _ENV_NAME.match(cfg["config_env"]):
        raise SpecError("app_specs_config_env", cfg["config_env"],
                        "must be an environment variable name")
    if not isinstance(cfg["envoy_image"], str) or not cfg["envoy_image"].strip() \
            or " " in cfg["envoy_image"]:
        raise SpecError("app_specs_envoy_image", cfg["envoy_image"], "must be an image reference")
    cfg["envoy_uid"] = _int(cfg["envoy_uid"], "app_specs_envoy_uid", 1, 2 ** 31 - 1)
    cfg["envoy_resources"] = _resources(cfg["envoy_resources"], "app_specs_envoy_resources")
    if not isinstance(cfg["restarts"], dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in cfg["restarts"].items()):
        raise SpecError("app_specs_restart", cfg["restarts"], "restart record must map app "
                        "names to times (kubeflat_restart.restart_record)")
    try:
        envoy_options(cfg["envoy"], "app_specs_envoy")
    except EnvoyError as exc:
        raise SpecError(exc.var, exc.value, exc.reason)
    return cfg


# --- catalog ------------------------------------------------------------------------------

def _app(raw, index, settings):
    if not isinstance(raw, dict):
        raise SpecError("app_specs_apps[%d]" % index, raw, "must be a mapping")
    name = raw.get("name")
    var = "app_specs_apps[%s]" % (name if isinstance(name, str) and name else index)
    _label(name, var + ".name", 40)
    unknown = sorted(set(raw) - APP_KEYS)
    if unknown:
        raise SpecError("%s.%s" % (var, unknown[0]), raw[unknown[0]],
                        "unknown key (known: %s)" % ", ".join(sorted(APP_KEYS)))
    app = {"name": name}
    app["namespace"] = _label(raw.get("namespace") or settings["namespace"], var + ".namespace")
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise SpecError(var + ".image", image, "must be an image reference (registry/name:tag)")
    app["image"] = image
    app["replicas"] = _int(raw.get("replicas", 1), var + ".replicas", 0, 1000)

    ports = raw.get("ports")
    if not isinstance(ports, list) or not ports:
        raise SpecError(var + ".ports", ports, "must be a non-empty list of {name, port}")
    app["ports"] = []
    for i, entry in enumerate(ports):
        pvar = "%s.ports[%d]" % (var, i)
        if not isinstance(entry, dict) or set(entry) - {"name", "port"}:
            raise SpecError(pvar, entry, "must be a mapping {name, port}")
        pname = entry.get("name")
        if not isinstance(pname, str) or not _PORT_NAME.match(pname) or len(pname) > 15 \
                or not re.search("[a-z]", pname):
            raise SpecError(pvar + ".name", pname, "must be an IANA service name (lower case "
                                                   "letters, digits, '-', at most 15)")
        port = _port(entry.get("port"), pvar + ".port")
        for other in app["ports"]:
            if other["name"] == pname or other["port"] == port:
                raise SpecError(pvar, entry, "duplicates port %s/%d"
                                % (other["name"], other["port"]))
        app["ports"].append({"name": pname, "port": port})

    app["resources"] = _resources(raw.get("resources"), var + ".resources")
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

    calls = raw.get("calls") or []
    if not isinstance(calls, list):
        raise SpecError(var + ".calls", calls, "must be a list of app names or {app, ...}")
    app["calls"] = []
    for i, call in enumerate(calls):
        cvar = "%s.calls[%d]" % (var, i)
        if isinstance(call, str):
            call = {"app": call}
        if not isinstance(call, dict) or "app" not in call or \
                set(call) - {"app", "namespace", "port", "local_port"}:
            raise SpecError(cvar, call, "must be an app name or {app, namespace, port, "
                                        "local_port}")
        app["calls"].append({"app": call["app"], "namespace": call.get("namespace"),
                             "port": call.get("port"), "local_port": call.get("local_port"),
                             "var": cvar})

    spread = raw.get("memory_spread")
    if spread is not None:
        svar = var + ".memory_spread"
        if not isinstance(spread, dict) or set(spread) - {"deployments", "step"}:
            raise SpecError(svar, spread, "must be a mapping {deployments, step}")
        count = _int(spread.get("deployments", 2), svar + ".deployments", 2, 10)
        step = parse_memory(spread.get("step"), svar + ".step")
        if "memory" not in app["resources"].get("limits", {}):
            raise SpecError(var + ".resources.limits.memory", None,
                            "memory_spread needs a base memory limit")
        if app["replicas"] and app["replicas"] < count:
            raise SpecError(svar + ".deployments", count,
                            "more Deployments than replicas (%d)" % app["replicas"])
        app["memory_spread"] = {"deployments": count, "step": step}
    else:
        app["memory_spread"] = None

    ingress = raw.get("ingress") or []
    if not isinstance(ingress, list):
        raise SpecError(var + ".ingress", ingress, "must be a list of {host, path, listener}")
    app["ingress"] = []
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
        app["ingress"].append({"host": host, "path": path, "listener": entry.get("listener"),
                               "var": ivar})

    app["termination_grace_period_seconds"] = _int(
        raw.get("termination_grace_period_seconds", 30),
        var + ".termination_grace_period_seconds", 1, 3600)
    app["pre_stop_sleep_seconds"] = _int(raw.get("pre_stop_sleep_seconds", 10),
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
                local_port = _port(next_port, call["var"] + ".local_port")
            else:
                local_port = _port(call["local_port"], call["var"] + ".local_port")
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


# --- manifests ----------------------------------------------------------------------------

def _meta(name, namespace, labels=None, annotations=None):
    meta = {"name": name, "labels": dict(MANAGED_BY, **(labels or {}))}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def namespace_manifest(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, None)}


def _http_probe(probe, ports):
    if probe is None:
        return None
    port = probe["port"]
    action = {"httpGet": {"path": probe["path"], "port": port}} if probe["path"] else \
        {"tcpSocket": {"port": port}}
    action.update({"initialDelaySeconds": probe["initial_delay_seconds"],
                   "periodSeconds": probe["period_seconds"],
                   "timeoutSeconds": probe["timeout_seconds"],
                   "failureThreshold": probe["failure_threshold"]})
    return action


def _tiers(app):
    """[(deployment name, tier label or None, replicas, resources)] for an app."""
    spread = app["memory_spread"]
    if not spread:
        return [(app["name"], None, app["replicas"], app["resources"])]
    base = parse_memory(app["resources"]["limits"]["memory"], "memory")
    count = spread["deployments"]
    tiers = []
    for i in range(count):
        # Spread replicas as evenly as possible; earlier tiers take the remainder.
        replicas = app["replicas"] // count + (1 if i < app["replicas"] % count else 0)
        resources = {k: dict(v) for k, v in app["resources"].items()}
        resources["limits"]["memory"] = format_memory(base + i * spread["step"])
        tiers.append(("%s-m%d" % (app["name"], i), str(i), replicas, resources))
    return tiers


def _sidecar_container(app, settings, configmap):
    return {
        "name": "envoy",
        "image": settings["envoy_image"],
        # A native sidecar: started before and stopped after the app container.
        "restartPolicy": "Always",
        "command": ["envoy"],
        "args": ["--config-path", ENVOY_CONFIG_PATH, "--concurrency", "2",
                 "--drain-time-s", str(app["pre_stop_sleep_seconds"] or 1),
                 "--disable-hot-restart", "--log-level", "warn"],
        "resources": settings["envoy_resources"],
        "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy", "readOnly": True}],
        "securityContext": {"runAsUser": settings["envoy_uid"], "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }


def app_bundle(app, settings):
    """Everything rendered for one app: ``{"manifests": [...], "envoy": bootstrap or None,
    "envoy_text": str or None}``."""
    labels = {NAME_LABEL: app["name"]}
    docs = []
    envoy = envoy_text = configmap = None
    if app["upstreams"]:
        envoy = sidecar_bootstrap(app["name"], app["upstreams"], app["envoy"])
        envoy_text = dump_yaml(envoy)
        configmap = "%s-envoy-%s" % (app["name"], content_hash(envoy_text))
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": _meta(configmap, app["namespace"], labels),
                     "immutable": True, "data": {"envoy.yaml": envoy_text}})
    checksum = hashlib.sha256((app["config_yaml"] + "\0" + (envoy_text or "")).encode("utf-8"))
    annotations = {CHECKSUM_ANNOTATION: checksum.hexdigest()}
    annotations.update(restart_annotations(settings["restarts"], app["name"]))
    env = [{"name": settings["config_env"], "value": app["config_yaml"]}]
    env += [{"name": u["env"], "value": "http://127.0.0.1:%d" % u["local_port"]}
            for u in app["upstreams"]]
    for dname, tier, replicas, resources in _tiers(app):
        pod_labels = dict(labels, **{DEPLOYMENT_LABEL: dname})
        if tier is not None:
            pod_labels[TIER_LABEL] = tier
        container = {
            "name": "app",
            "image": app["image"],
            "ports": [{"name": p["name"], "containerPort": p["port"], "protocol": "TCP"}
                      for p in app["ports"]],
            "env": env,
            "resources": resources,
            "securityContext": {"allowPrivilegeEscalation": False},
        }
        if app["pre_stop_sleep_seconds"]:
            # Keep serving while callers' DNS refresh drops this pod, then get SIGTERM.
            container["lifecycle"] = {"preStop": {"sleep": {
                "seconds": app["pre_stop_sleep_seconds"]}}}
        for kind, field in (("readiness", "readinessProbe"), ("liveness", "livenessProbe")):
            probe = _http_probe(app["probes"][kind], app["ports"])
            if probe:
                container[field] = probe
        pod_spec = {
            "terminationGracePeriodSeconds": app["termination_grace_period_seconds"],
            "enableServiceLinks": False,
            "containers": [container],
        }
        if configmap:
            pod_spec["initContainers"] = [_sidecar_container(app, settings, configmap)]
            pod_spec["volumes"] = [{"name": "envoy-config",
                                    "configMap": {"name": configmap}}]
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(dname, app["namespace"], pod_labels),
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": {NAME_LABEL: app["name"], DEPLOYMENT_LABEL: dname}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": pod_labels, "annotations": annotations},
                             "spec": pod_spec},
            },
        })
    docs.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(app["name"], app["namespace"], labels),
        "spec": {
            "clusterIP": "None",
            "selector": {NAME_LABEL: app["name"]},
            "ports": [{"name": p["name"], "port": p["port"], "targetPort": p["port"],
                       "protocol": "TCP"} for p in app["ports"]],
        },
    })
    return {"manifests": docs, "envoy": envoy, "envoy_text": envoy_text}


# --- ingress ------------------------------------------------------------------------------

def ingress_settings(raw=None):
    """Validate ``envoy_ingress_*`` settings."""
    cfg = dict(INGRESS_DEFAULTS)
    cfg.update({k: v for k, v in (raw or {}).items() if v is not None})
    unknown = sorted(set(cfg) - set(INGRESS_DEFAULTS))
    if unknown:
        raise SpecError("envoy_ingress_" + unknown[0], cfg[unknown[0]], "unknown setting")
    _label(cfg["namespace"], "envoy_ingress_namespace")
    listeners = cfg["listeners"]
    if not isinstance(listeners, list) or not listeners:
        raise SpecError("envoy_ingress_listeners", listeners,
                        "must be a non-empty list of {name, port}")
    seen = set()
    out = []
    for i, entry in enumerate(listeners):
        var = "envoy_ingress_listeners[%d]" % i
        if not isinstance(entry, dict) or set(entry) != {"name", "port"}:
            raise SpecError(var, entry, "must be a mapping {name, port}")
        _label(entry["name"], var + ".name", 15)
        port = _port(entry["port"], var + ".port")
        if entry["name"] in seen or port in seen:
            raise SpecError(var, entry, "duplicate listener name or port")
        seen.update((entry["name"], port))
        out.append({"name": entry["name"], "port": port})
    cfg["listeners"] = out
    if not isinstance(cfg["on_control_planes"], bool):
        raise SpecError("envoy_ingress_on_control_planes", cfg["on_control_planes"],
                        "must be true or false")
    cfg["resources"] = _resources(cfg["resources"], "envoy_ingress_resources")
    return cfg


def ingress_routes(catalog, listeners, domain):
    """The ingress routes of the validated catalog (listener defaults to the first one)."""
    names = [listener["name"] for listener in listeners]
    routes = []
    for app in catalog:
        readiness = app["probes"]["readiness"]
        port = app["ports"][0]
        for entry in app["ingress"]:
            listener = entry["listener"] or names[0]
            if listener not in names:
                raise SpecError(entry["var"] + ".listener", listener,
                                "not one of envoy_ingress_listeners: %s" % ", ".join(names))
            routes.append({
                "listener": listener, "host": entry["host"], "path": entry["path"],
                "service": app["name"], "namespace": app["namespace"],
                "host_name": headless_name(app["name"], app["namespace"], domain),
                "port": port["port"],
                "health_path": readiness["path"] if readiness and readiness["port"] in (
                    port["name"], port["port"]) else None,
            })
    return routes


def ingress_bundle(catalog, settings, ingress, model):
    """Ingress DaemonSet manifests, its Envoy bootstrap and the outside balancer config."""
    opts = envoy_options(settings["envoy"], "app_specs_envoy")
    routes = ingress_routes(catalog, ingress["listeners"], model["cluster_domain"])
    envoy = ingress_bootstrap(ingress["listeners"], routes, opts, cluster_resolvers(model))
    envoy_text = dump_yaml(envoy)
    nodes = [n for n in model["nodes"] if ingress["on_control_planes"] or not n["control_plane"]]
    outside = outside_balancer_bootstrap(ingress["listeners"], [n["address"] for n in nodes],
                                         opts)
    ns = ingress["namespace"]
    labels = {NAME_LABEL: "envoy-ingress"}
    configmap = "envoy-ingress-%s" % content_hash(envoy_text)
    pod_spec = {
        "hostNetwork": True,
        # hostNetwork pods need this to resolve the apps' headless names via cluster DNS.
        "dnsPolicy": "ClusterFirstWithHostNet",
        "priorityClassName": "system-node-critical",
        # preStop (fail the health check, keep serving while the balancer drains) + SIGTERM.
        "terminationGracePeriodSeconds": max(30, ingress_drain_seconds(opts) + 10),
        "containers": [{
            "name": "envoy",
            "image": settings["envoy_image"],
            "lifecycle": {"preStop": ingress_pre_stop(opts)},
            "command": ["envoy"],
            "args": ["--config-path", ENVOY_CONFIG_PATH, "--disable-hot-restart",
                     "--drain-time-s", "15", "--log-level", "warn"],
            "ports": [{"name": l["name"], "containerPort": l["port"], "hostPort": l["port"],
                       "protocol": "TCP"} for l in ingress["listeners"]],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": ingress["listeners"][0][
                "port"], "httpHeaders": [{"name": "Host", "value": "kubeflat-ingress-health"}]},
                "periodSeconds": 5},
            "resources": ingress["resources"],
            "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy",
                              "readOnly": True}],
            "securityContext": {"runAsUser": settings["envoy_uid"], "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"],
                                                 "add": ["NET_BIND_SERVICE"]}},
        }],
        "volumes": [{"name": "envoy-config", "configMap": {"name": configmap}}],
    }
    if ingress["on_control_planes"]:
        pod_spec["tolerations"] = [{"key": CONTROL_PLANE_LABEL, "operator": "Exists",
                                    "effect": "NoSchedule"}]
    else:
        pod_spec["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                "matchExpressions": [{"key": CONTROL_PLANE_LABEL, "operator": "DoesNotExist"}]
            }]}}}
    docs = [
        namespace_manifest(ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(configmap, ns, labels),
         "immutable": True, "data": {"envoy.yaml": envoy_text}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta("envoy-ingress", ns,
                                                                          labels),
         "spec": {
             "selector": {"matchLabels": labels},
             "updateStrategy": {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 1}},
             "template": {"metadata": {"labels": dict(MANAGED_BY, **labels), "annotations": {
                 CHECKSUM_ANNOTATION: hashlib.sha256(envoy_text.encode()).hexdigest()}},
                 "spec": pod_spec},
         }},
    ]
    return {"manifests": docs, "envoy": envoy, "envoy_text": envoy_text,
            "outside": outside, "outside_text": dump_yaml(outside),
            "nodes": [n["address"] for n in nodes]}


# --- CoreDNS ------------------------------------------------------------------------------

def coredns_settings(raw=None):
    """Validate ``envoy_ingress_coredns_*`` settings."""
    cfg = dict(COREDNS_DEFAULTS)
    cfg.update({k: v for k, v in (raw or {}).items() if v is not None})
    unknown = sorted(set(cfg) - set(COREDNS_DEFAULTS))
    if unknown:
        raise SpecError("envoy_ingress_coredns_" + unknown[0], cfg[unknown[0]],
                        "unknown setting")
    ports = {}
    for key in ("health_port", "ready_port", "metrics_port"):
        port = _port(cfg[key], "envoy_ingress_coredns_" + key)
        if port == 53 or port in ports:
            raise SpecError("envoy_ingress_coredns_" + key, port,
                            "collides with %s" % ports.get(port, "DNS port 53"))
        ports[port] = key
        cfg[key] = port
    cfg["cache_seconds"] = _int(cfg["cache_seconds"], "envoy_ingress_coredns_cache_seconds",
                                0, 3600)
    if not isinstance(cfg["replace_service"], bool):
        raise SpecError("envoy_ingress_coredns_replace_service", cfg["replace_service"],
                        "must be true or false")
    cfg["resources"] = _resources(cfg["resources"], "envoy_ingress_coredns_resources")
    return cfg


def corefile(model, cfg):
    """The Corefile: binds the node address only (hostNetwork; leaves 127.0.0.53 alone)."""
    lines = [
        ".:53 {",
        "    errors",
        "    bind {$NODE_IP}",
        "    health {$NODE_IP}:%d {" % cfg["health_port"],
        "        lameduck 5s",
        "    }",
        "    ready {$NODE_IP}:%d" % cfg["ready_port"],
        "    kubernetes %s in-addr.arpa ip6.arpa {" % model["cluster_domain"],
        "        pods insecure",
        "        fallthrough in-addr.arpa ip6.arpa",
        "        ttl 5",
        "    }",
        "    prometheus {$NODE_IP}:%d" % cfg["metrics_port"],
        "    forward . /etc/resolv.conf {",
        "        max_concurrent 1000",
        "    }",
    ]
    if cfg["cache_seconds"]:
        lines.append("    cache %d" % cfg["cache_seconds"])
    lines += ["    loop", "    reload", "    loadbalance", "}", ""]
    return "\n".join(lines)


def coredns_bundle(model, cfg):
    """CoreDNS as a hostNetwork DaemonSet on the control-plane nodes (+ RBAC, ConfigMap)."""
    ns = "kube-system"
    labels = {"k8s-app": "kube-dns"}
    text = corefile(model, cfg)
    configmap = "coredns-%s" % content_hash(text)
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("coredns", ns, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta("system:coredns", None, labels),
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta("system:coredns", None, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(configmap, ns, labels),
         "immutable": True, "data": {"Corefile": text}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": _meta("coredns", ns, labels),
         "spec": {
             "selector": {"matchLabels": labels},
             "updateStrategy": {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 1}},
             "template": {
                 "metadata": {"labels": dict(MANAGED_BY, **labels), "annotations": {
                     CHECKSUM_ANNOTATION: hashlib.sha256(text.encode()).hexdigest()}},
                 "spec": {
                     "hostNetwork": True,
                     # The node's resolver is the upstream; cluster DNS would be a loop.
                     "dnsPolicy": "Default",
                     "priorityClassName": "system-cluster-critical",
                     "serviceAccountName": "coredns",
                     "nodeSelector": {CONTROL_PLANE_LABEL: ""},
                     "tolerations": [{"key": CONTROL_PLANE_LABEL, "operator": "Exists",
                                      "effect": "NoSchedule"},
                                     {"key": "CriticalAddonsOnly", "operator": "Exists"}],
                     "containers": [{
                         "name": "coredns",
                         "image": cfg["image"],
                         "args": ["-conf", "/etc/coredns/Corefile"],
                         "env": [{"name": "NODE_IP", "valueFrom": {
                             "fieldRef": {"fieldPath": "status.hostIP"}}}],
                         "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                   {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                   {"name": "metrics", "containerPort": cfg["metrics_port"],
                                    "protocol": "TCP"}],
                         "livenessProbe": {"httpGet": {"path": "/health",
                                                       "port": cfg["health_port"]},
                                           "initialDelaySeconds": 60, "timeoutSeconds": 5,
                                           "failureThreshold": 5},
                         "readinessProbe": {"httpGet": {"path": "/ready",
                                                        "port": cfg["ready_port"]}},
                         "resources": cfg["resources"],
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns",
                                           "readOnly": True}],
                         "securityContext": {
                             "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                             "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
                     }],
                     "volumes": [{"name": "config", "configMap": {"name": configmap}}],
                 },
             },
         }},
    ]
    if cfg["replace_service"]:
        docs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": _meta("kube-dns", ns, dict(labels, **{
                         "kubernetes.io/name": "CoreDNS"})),
                     "spec": {"clusterIP": model["dns_service_ip"], "selector": labels,
                              "ports": [{"name": "dns", "port": 53, "targetPort": 53,
                                         "protocol": "UDP"},
                                        {"name": "dns-tcp", "port": 53, "targetPort": 53,
                                         "protocol": "TCP"}]}})
    cp_addresses = [n["address"] for n in model["nodes"] if n["control_plane"]]
    return {"manifests": docs, "corefile": text, "dns_addresses": cp_addresses}


# --- whole render -------------------------------------------------------------------------

def render_apps(apps, settings, model):
    """``{relpath: text}`` for the app catalog (manifests under ``specs/<ns>/``, sidecar
    bootstraps under ``envoy/sidecars/<ns>/``). Paths are relative to kubeflat_render_dir."""
    settings = spec_settings(settings)
    catalog = validate_catalog(apps, settings, model)
    files = {}
    for ns in sorted({a["namespace"] for a in catalog}):
        files["specs/%s/namespace.yaml" % ns] = dump_yaml(namespace_manifest(ns))
    for app in catalog:
        bundle = app_bundle(app, settings)
        files["specs/%s/%s.yaml" % (app["namespace"], app["name"])] = dump_all(bundle["manifests"])
        if bundle["envoy_text"]:
            files["envoy/sidecars/%s/%s.yaml" % (app["namespace"], app["name"])] = \
                bundle["envoy_text"]
    return files


def render_edge(apps, settings, ingress, coredns, model):
    """``{relpath: text}`` for the ingress DaemonSet, the outside balancer and CoreDNS.

    ``coredns`` None leaves CoreDNS out, refused when pods resolve through the control planes
    (``kubeflat_dns_mode: control_planes``): nothing would answer on those addresses.
    """
    if coredns is None and model.get("dns_mode") == "control_planes":
        raise SpecError("envoy_ingress_coredns", False,
                        "kubeflat_dns_mode is control_planes: pods and Envoys resolve through "
                        "%s, where only the CoreDNS DaemonSet would answer; render it or set "
                        "kubeflat_dns_mode: service" % ", ".join(model["cluster_dns"]))
    settings = spec_settings(settings)
    ingress = ingress_settings(ingress)
    catalog = validate_catalog(apps, settings, model)
    bundle = ingress_bundle(catalog, settings, ingress, model)
    ns = ingress["namespace"]
    files = {
        "specs/%s/envoy-ingress.yaml" % ns: dump_all(bundle["manifests"]),
        "envoy/ingress.yaml": bundle["envoy_text"],
        "envoy/outside-balancer.yaml": bundle["outside_text"],
    }
    if coredns is not None:
        dns = coredns_bundle(model, coredns_settings(coredns))
        files["specs/kube-system/coredns.yaml"] = dump_all(dns["manifests"])
    return files


def manifest_order(paths):
    """Apply order: namespaces first, then everything else (sorted)."""
    return sorted(paths, key=lambda p: (not p.endswith("/namespace.yaml"),
                                        "envoy-ingress" not in p, p))


__all__ = ["SpecError", "EnvoyError", "dump_yaml", "dump_all", "content_hash", "parse_memory",
           "format_memory", "spec_settings", "validate_catalog", "app_bundle", "ingress_settings",
           "ingress_routes", "ingress_bundle", "coredns_settings", "corefile", "coredns_bundle",
           "render_apps", "render_edge", "manifest_order", "cluster_name"]
