# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Envoy bootstrap builders for kubeflat: sidecars, the ingress DaemonSet, the outside balancer.

Pure functions that return Envoy v3 bootstrap configurations as plain dicts (serialise them
with :func:`kubeflat_manifests.dump_yaml` or ``yaml.safe_dump``). Nothing here reads files or
runs commands.

Design (see docs/specs.md):

* **Sidecar** (one per pod that calls other apps): for each upstream, one listener on
  ``127.0.0.1:<local_port>`` whose only route goes to one ``STRICT_DNS`` cluster on the
  upstream's headless Service name ``<svc>.<ns>.svc.<cluster_domain>``. The cluster resolves
  every ready pod (``dns_lookup_family: V4_ONLY``, short refresh), retries at L7
  (``5xx,reset,connect-failure`` with the ``previous_hosts`` predicate and a per-try timeout),
  ejects failing pods with outlier detection sized for pools of 2-5 pods, health-checks each
  pod actively and bounds itself with circuit breakers. Admin listens on 127.0.0.1 only.
* **Ingress** (DaemonSet, hostNetwork): one listener per configured node port on 0.0.0.0,
  virtual hosts by host name, routes by path prefix to the same kind of cluster per app,
  plus a health virtual host the outside balancer probes.
* **Outside balancer**: a plain TCP (L4) proxy with a STATIC cluster listing every ingress
  node address, HTTP health checks against the ingress health virtual host.

Options (:data:`ENVOY_DEFAULTS`) are validated by :func:`envoy_options`; every refusal raises
:class:`EnvoyError` whose message names the variable.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

import re

__metaclass__ = type

ENVOY_DEFAULTS = {
    "admin_port": 9901,           # admin interface, always on 127.0.0.1
    "first_local_port": 15001,    # first sidecar listener port (one per upstream, in order)
    "connect_timeout": "1s",
    "request_timeout": "15s",     # whole request, retries included
    "per_try_timeout": "3s",
    "retries": 3,
    "retry_back_off_base": "0.025s",
    "retry_back_off_max": "0.25s",
    "dns_refresh_rate": "5s",
    "health_check_interval": "5s",
    "health_check_timeout": "1s",
    "unhealthy_threshold": 2,
    "healthy_threshold": 1,
    "outlier_consecutive_5xx": 3,
    "outlier_consecutive_local_origin_failure": 2,
    "outlier_interval": "5s",
    "outlier_base_ejection_time": "15s",
    "outlier_max_ejection_percent": 50,
    "max_connections": 1024,
    "max_pending_requests": 1024,
    "max_requests": 1024,
    "max_retries": 64,
}
# Retried conditions are fixed by design: server errors, resets and refused connections.
RETRY_ON = "5xx,reset,connect-failure"
HEALTH_VHOST = "kubeflat-ingress-health"
HEALTH_PATH = "/healthz"
# DNS client of every DNS cluster when resolvers are given (the cluster DNS servers): one
# second per query, two tries per server, queries spread over all servers, names are FQDNs.
DNS_QUERY_TIMEOUT_SECONDS = 1
DNS_QUERY_TRIES = 2
# Access log of the ingress and the outside balancer: one JSON object per request/connection
# with the addresses each side saw (no NAT anywhere: a hop's peer is the previous hop itself).
INGRESS_LOG_FORMAT = {
    "start": "%START_TIME%", "downstream": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "authority": "%REQ(:AUTHORITY)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%",
    "upstream_host": "%UPSTREAM_HOST%", "upstream_local": "%UPSTREAM_LOCAL_ADDRESS%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "request_id": "%REQ(X-REQUEST-ID)%",
    "duration_ms": "%DURATION%",
}
BALANCER_LOG_FORMAT = {
    "start": "%START_TIME%", "downstream": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "upstream_host": "%UPSTREAM_HOST%", "upstream_local": "%UPSTREAM_LOCAL_ADDRESS%",
    "flags": "%RESPONSE_FLAGS%", "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%", "duration_ms": "%DURATION%",
}
# Connection attempts of the outside balancer (tcp_proxy): a refused connect to one node's
# ingress is retried on another node.
BALANCER_CONNECT_ATTEMPTS = 3

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")
_PORT_KEYS = ("admin_port", "first_local_port")
_INT_RANGES = {
    "retries": (0, 10),
    "unhealthy_threshold": (1, 10),
    "healthy_threshold": (1, 10),
    "outlier_consecutive_5xx": (1, 100),
    "outlier_consecutive_local_origin_failure": (1, 100),
    "outlier_max_ejection_percent": (0, 100),
    "max_connections": (1, 1000000),
    "max_pending_requests": (1, 1000000),
    "max_requests": (1, 1000000),
    "max_retries": (1, 1000000),
}
_DURATION_KEYS = ("connect_timeout", "request_timeout", "per_try_timeout", "retry_back_off_base",
                  "retry_back_off_max", "dns_refresh_rate", "health_check_interval",
                  "health_check_timeout", "outlier_interval", "outlier_base_ejection_time")


class EnvoyError(InputError):
    """An Envoy option that cannot be used; the message names the variable."""


def parse_duration(value, var):
    """``"250ms"``, ``"1.5s"`` or a number of seconds -> milliseconds (int, > 0)."""
    if isinstance(value, bool):
        raise EnvoyError(var, value, "must be a duration like 250ms or 2s")
    if isinstance(value, (int, float)):
        millis = float(value) * 1000
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise EnvoyError(var, value, "must be a duration like 250ms or 2s")
        millis = float(match.group(1)) * (1 if match.group(2) == "ms" else 1000)
    if millis != int(millis):
        raise EnvoyError(var, value, "must be a whole number of milliseconds")
    if millis <= 0:
        raise EnvoyError(var, value, "must be greater than zero")
    if millis > 24 * 3600 * 1000:
        raise EnvoyError(var, value, "must be at most 24h")
    return int(millis)


def duration(millis):
    """Milliseconds -> Envoy's JSON duration string (``"0.25s"``, ``"3s"``)."""
    seconds, rest = divmod(int(millis), 1000)
    if rest == 0:
        return "%ds" % seconds
    return ("%d.%03d" % (seconds, rest)).rstrip("0") + "s"


def check_port(value, var):
    """A TCP port number 1..65535 (refuses booleans and strings that are not integers)."""
    if isinstance(value, bool):
        raise EnvoyError(var, value, "must be a port number 1-65535")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise EnvoyError(var, value, "must be a port number 1-65535")
    if str(port) != str(value).strip() or not 1 <= port <= 65535:
        raise EnvoyError(var, value, "must be a port number 1-65535")
    return port


def _check_int(value, var, low, high):
    if isinstance(value, bool):
        raise EnvoyError(var, value, "must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise EnvoyError(var, value, "must be an integer")
    if str(number) != str(value).strip():
        raise EnvoyError(var, value, "must be an integer")
    if not low <= number <= high:
        raise EnvoyError(var, value, "must be between %d and %d" % (low, high))
    return number


def envoy_options(overrides=None, var="app_specs_envoy", base=None):
    """Merge ``overrides`` over ``base`` (default :data:`ENVOY_DEFAULTS`) and validate.

    ``base`` and ``overrides`` are raw (user-facing) option dicts, so per-app overrides can be
    merged over the global options before validation. Returns a normalised dict: ports and counts as int, durations as int milliseconds.
    ``var`` is the variable name used in error messages (``app_specs_envoy.retries``).
    """
    merged = dict(ENVOY_DEFAULTS if base is None else base)
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise EnvoyError(var, overrides, "must be a mapping of Envoy options")
    unknown = sorted(set(overrides) - set(ENVOY_DEFAULTS))
    if unknown:
        raise EnvoyError("%s.%s" % (var, unknown[0]), overrides[unknown[0]],
                         "unknown option (known: %s)" % ", ".join(sorted(ENVOY_DEFAULTS)))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    out = {}
    for key in _PORT_KEYS:
        out[key] = check_port(merged[key], "%s.%s" % (var, key))
    for key, (low, high) in _INT_RANGES.items():
        out[key] = _check_int(merged[key], "%s.%s" % (var, key), low, high)
    for key in _DURATION_KEYS:
        out[key] = parse_duration(merged[key], "%s.%s" % (var, key))
    if out["per_try_timeout"] > out["request_timeout"]:
        raise EnvoyError("%s.per_try_timeout" % var, merged["per_try_timeout"],
                         "longer than request_timeout %s: no retry could ever run"
                         % duration(out["request_timeout"]))
    if out["health_check_timeout"] >= out["health_check_interval"]:
        raise EnvoyError("%s.health_check_timeout" % var, merged["health_check_timeout"],
                         "must be shorter than health_check_interval %s"
                         % duration(out["health_check_interval"]))
    if out["retry_back_off_max"] < out["retry_back_off_base"]:
        raise EnvoyError("%s.retry_back_off_max" % var, merged["retry_back_off_max"],
                         "shorter than retry_back_off_base")
    if out["max_retries"] < out["retries"]:
        raise EnvoyError("%s.max_retries" % var, out["max_retries"],
                         "circuit breaker allows fewer concurrent retries than retries per request")
    return out


def headless_name(service, namespace, cluster_domain):
    """The DNS name of a headless Service: ``<svc>.<ns>.svc.<domain>``."""
    return "%s.%s.svc.%s" % (service, namespace, cluster_domain)


def cluster_name(service, namespace):
    """Envoy cluster name of an app (``_`` cannot occur in Kubernetes names: unambiguous)."""
    return "%s_%s" % (namespace, service)


def _admin(opts):
    return {"address": {"socket_address": {"address": "127.0.0.1",
                                           "port_value": opts["admin_port"]}}}


def _health_check(opts, health_path, host=None):
    check = {
        "timeout": duration(opts["health_check_timeout"]),
        "interval": duration(opts["health_check_interval"]),
        # Without this an idle cluster is only checked every 60 s (Envoy's default).
        "no_traffic_interval": duration(opts["health_check_interval"]),
        "unhealthy_threshold": opts["unhealthy_threshold"],
        "healthy_threshold": opts["healthy_threshold"],
    }
    if health_path:
        http = {"path": health_path}
        if host:
            http["host"] = host
        check["http_health_check"] = http
    else:
        check["tcp_health_check"] = {}
    return check


def _outlier_detection(opts):
    """Outlier detection for pools of 2-5 pods.

    Envoy's defaults assume big pools: success-rate ejection needs 5 hosts and
    max_ejection_percent=10 would allow at most one ejection anyway. Here failures are counted
    per host (consecutive 5xx from the app, consecutive local-origin failures such as refused
    connections and resets, counted separately), and up to half the pool may be ejected.
    """
    return {
        "consecutive_5xx": opts["outlier_consecutive_5xx"],
        "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": opts["outlier_consecutive_5xx"],
        "enforcing_consecutive_gateway_failure": 100,
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": opts["outlier_consecutive_local_origin_failure"],
        "enforcing_consecutive_local_origin_failure": 100,
        "enforcing_success_rate": 0,
        "interval": duration(opts["outlier_interval"]),
        "base_ejection_time": duration(opts["outlier_base_ejection_time"]),
        "max_ejection_percent": opts["outlier_max_ejection_percent"],
    }


def _circuit_breakers(opts):
    return {"thresholds": [{
        "priority": "DEFAULT",
        "max_connections": opts["max_connections"],
        "max_pending_requests": opts["max_pending_requests"],
        "max_requests": opts["max_requests"],
        "max_retries": opts["max_retries"],
    }]}


def cluster_resolvers(model):
    """DNS servers the rendered Envoys query: the control-plane addresses in the default DNS
    mode (``kubeflat_dns_mode: control_planes``); None (the pod's resolv.conf) otherwise."""
    if model.get("dns_mode") == "control_planes":
        return list(model["cluster_dns"])
    return None


def dns_resolver_config(resolvers):
    """c-ares resolver config on explicit DNS servers (port 53), spread over all of them, so
    one server down costs at most a one-second try on the next one."""
    return {"name": "envoy.network.dns_resolver.cares", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3."
                 "CaresDnsResolverConfig",
        "resolvers": [{"socket_address": {"address": r, "port_value": 53}} for r in resolvers],
        "dns_resolver_options": {"no_default_search_domain": True},
        "query_timeout_seconds": DNS_QUERY_TIMEOUT_SECONDS,
        "query_tries": DNS_QUERY_TRIES,
        "rotate_nameservers": True,
    }}


def dns_cluster(name, host, port, opts, health_path=None, resolvers=None):
    """A strict-DNS cluster on a headless name: every A record is one endpoint.

    Expressed as ``cluster_type: envoy.clusters.dns`` with
    ``all_addresses_in_single_endpoint: false``, which is STRICT_DNS without the fields
    Envoy 1.40 deprecates on the Cluster message. ``resolvers``: DNS server addresses
    (:func:`cluster_resolvers`); None uses the resolv.conf of the pod.
    """
    cluster = {
        "name": name,
        # Strict DNS (every A record is an endpoint), through the DNS cluster extension:
        # Envoy 1.40 deprecates type: STRICT_DNS together with Cluster.dns_refresh_rate.
        "cluster_type": {"name": "envoy.clusters.dns", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster",
            "all_addresses_in_single_endpoint": False,
            "dns_lookup_family": "V4_ONLY",
            "dns_refresh_rate": duration(opts["dns_refresh_rate"]),
            "respect_dns_ttl": False,
        }},
        "connect_timeout": duration(opts["connect_timeout"]),
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": host, "port_value": port}}}}]}],
        },
        "health_checks": [_health_check(opts, health_path)],
        "outlier_detection": _outlier_detection(opts),
        "circuit_breakers": _circuit_breakers(opts),
    }
    if resolvers:
        cluster["cluster_type"]["typed_config"]["typed_dns_resolver_config"] = \
            dns_resolver_config(resolvers)
    return cluster


def retry_policy(opts):
    """The L7 retry policy: a failed try is retried on a *different* pod when there is one."""
    return {
        "retry_on": RETRY_ON,
        "num_retries": opts["retries"],
        "per_try_timeout": duration(opts["per_try_timeout"]),
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host."
                                      "previous_hosts.v3.PreviousHostsPredicate"},
        }],
        "host_selection_retry_max_attempts": 5,
        "retry_back_off": {"base_interval": duration(opts["retry_back_off_base"]),
                           "max_interval": duration(opts["retry_back_off_max"])},
    }


def _route_action(cluster, opts):
    return {"cluster": cluster, "timeout": duration(opts["request_timeout"]),
            "retry_policy": retry_policy(opts)}


def _router_filter():
    return {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def _hcm(stat_prefix, virtual_hosts, extra=None):
    config = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "route_config": {"name": stat_prefix, "virtual_hosts": virtual_hosts},
        "http_filters": [_router_filter()],
    }
    config.update(extra or {})
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def _listener(name, address, port, network_filter):
    return {
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [{"filters": [network_filter]}],
    }


def sidecar_bootstrap(app, upstreams, opts):
    """Bootstrap of the Envoy sidecar of ``app``.

    ``upstreams``: list of dicts ``{"service", "namespace", "host", "port", "local_port",
    "health_path"}`` (``host`` is the headless name, ``health_path`` None for a TCP check),
    as produced by :func:`kubeflat_catalog.validate_catalog`. ``opts`` from :func:`envoy_options`.
    """
    if not upstreams:
        raise EnvoyError("app_specs_apps[%s].calls" % app, [], "a sidecar needs an upstream")
    listeners = []
    clusters = []
    seen = {}
    for up in upstreams:
        if up["local_port"] in seen or up["local_port"] == opts["admin_port"]:
            raise EnvoyError("app_specs_apps[%s].calls[%s].local_port" % (app, up["service"]),
                             up["local_port"], "already used by %s"
                             % seen.get(up["local_port"], "the Envoy admin port"))
        seen[up["local_port"]] = up["service"]
        name = cluster_name(up["service"], up["namespace"])
        vhost = {"name": name, "domains": ["*"],
                 "routes": [{"match": {"prefix": "/"}, "route": _route_action(name, opts)}]}
        listeners.append(_listener("to_" + name, "127.0.0.1", up["local_port"],
                                   _hcm("to_" + name, [vhost])))
        clusters.append(dns_cluster(name, up["host"], up["port"], opts, up.get("health_path"),
                                    up.get("resolvers")))
    return {
        "node": {"id": app, "cluster": app},
        "admin": _admin(opts),
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def ingress_drain_seconds(opts):
    """How long a stopping ingress keeps serving after failing its health check: until the
    outside balancer has seen ``unhealthy_threshold`` failed checks (one interval of slack)."""
    millis = (opts["unhealthy_threshold"] + 1) * opts["health_check_interval"] + \
        opts["health_check_timeout"]
    return -(-millis // 1000) + 1


def ingress_pre_stop(opts):
    """preStop of the ingress container: fail the health check through the admin API (POST,
    with bash's /dev/tcp: the envoyproxy/envoy image is Ubuntu-based and has no curl), then
    keep serving while the outside balancer takes the node out. SIGTERM follows."""
    request = ("POST /healthcheck/fail HTTP/1.1\\r\\nHost: localhost\\r\\n"
               "Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
    script = ("exec 3<>/dev/tcp/127.0.0.1/%d && printf '%s' >&3 && cat <&3 >/dev/null; "
              "sleep %d" % (opts["admin_port"], request, ingress_drain_seconds(opts)))
    return {"exec": {"command": ["bash", "-c", script]}}


def _health_filter():
    """Answers the balancer's health check itself: 200, or 503 once the server is failed
    (admin /healthcheck/fail in the preStop) so the node drains before Envoy stops."""
    return {"name": "envoy.filters.http.health_check", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
        "pass_through_mode": False,
        "headers": [{"name": ":path", "string_match": {"exact": HEALTH_PATH}},
                    {"name": ":authority", "string_match": {"exact": HEALTH_VHOST}}],
    }}


def _json_log(fmt):
    return [{"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3."
                 "StdoutAccessLog",
        "log_format": {"json_format": dict(fmt)}}}]


def ingress_bootstrap(listeners, routes, opts, resolvers=None):
    """Bootstrap of the Envoy ingress DaemonSet (hostNetwork).

    ``listeners``: ``[{"name", "port"}]`` (node ports, bound on 0.0.0.0).
    ``routes``: ``[{"listener", "host", "path", "service", "namespace", "host_name", "port",
    "health_path"}]`` where ``host_name`` is the app's headless DNS name.
    Every listener also answers ``GET /healthz`` for host ``kubeflat-ingress-health``
    (the outside balancer's health check).
    """
    if not listeners:
        raise EnvoyError("envoy_ingress_listeners", listeners, "needs at least one listener")
    clusters = {}
    out_listeners = []
    for listener in listeners:
        by_host = {}
        for route in routes:
            if route["listener"] != listener["name"]:
                continue
            name = cluster_name(route["service"], route["namespace"])
            if name not in clusters:
                clusters[name] = dns_cluster(name, route["host_name"], route["port"], opts,
                                             route.get("health_path"), resolvers)
            by_host.setdefault(route["host"], []).append(route)
        vhosts = [{"name": HEALTH_VHOST, "domains": [HEALTH_VHOST],
                   "routes": [{"match": {"path": HEALTH_PATH},
                               "direct_response": {"status": 200,
                                                   "body": {"inline_string": "ok\n"}}}]}]
        for host in sorted(by_host, key=lambda h: (h == "*", h)):
            # Longest path first: Envoy takes the first matching route.
            ordered = sorted(by_host[host], key=lambda r: (-len(r["path"]), r["path"]))
            domains = [host] if host == "*" else [host, "%s:%d" % (host, listener["port"])]
            vhosts.append({
                "name": "%s_%s" % (listener["name"], host.replace("*", "any")),
                "domains": domains,
                "routes": [{"match": {"prefix": r["path"]},
                            "route": _route_action(cluster_name(r["service"], r["namespace"]),
                                                   opts)} for r in ordered],
            })
        extra = {
            "use_remote_address": True,
            "access_log": _json_log(INGRESS_LOG_FORMAT),
            "http_filters": [_health_filter(), _router_filter()],
        }
        out_listeners.append(_listener("ingress_" + listener["name"], "0.0.0.0", listener["port"],
                                       _hcm("ingress_" + listener["name"], vhosts, extra)))
    return {
        "node": {"id": "envoy-ingress", "cluster": "envoy-ingress"},
        "admin": _admin(opts),
        "static_resources": {"listeners": out_listeners,
                             "clusters": [clusters[k] for k in sorted(clusters)]},
    }


def outside_balancer_bootstrap(listeners, node_addresses, opts):
    """Envoy config for a balancer outside the cluster: L4 to the ingress on every node.

    One TCP listener per ingress listener port, each proxying to a STATIC cluster of
    ``<node address>:<port>`` for every ingress node, health-checked over HTTP against the
    ingress health virtual host so a node whose ingress is down is skipped.
    """
    if not node_addresses:
        raise EnvoyError("envoy_ingress_nodes", node_addresses, "no node runs the ingress")
    out_listeners = []
    clusters = []
    for listener in listeners:
        name = "ingress_" + listener["name"]
        endpoints = [{"endpoint": {"address": {"socket_address": {
            "address": addr, "port_value": listener["port"]}}}} for addr in node_addresses]
        clusters.append({
            "name": name,
            "type": "STATIC",
            "connect_timeout": duration(opts["connect_timeout"]),
            "lb_policy": "ROUND_ROBIN",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
            "health_checks": [_health_check(opts, HEALTH_PATH, HEALTH_VHOST)],
            "outlier_detection": _outlier_detection(opts),
        })
        out_listeners.append(_listener(name, "0.0.0.0", listener["port"], {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3."
                         "TcpProxy",
                "stat_prefix": name,
                "cluster": name,
                "max_connect_attempts": BALANCER_CONNECT_ATTEMPTS,
                "access_log": _json_log(BALANCER_LOG_FORMAT),
            },
        }))
    return {
        "node": {"id": "outside-balancer", "cluster": "outside-balancer"},
        "admin": _admin(opts),
        "static_resources": {"listeners": out_listeners, "clusters": clusters},
    }
