# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many Envoy bootstraps merged into one, so one ``envoy --mode validate`` checks them all.

Pure functions (no files, no processes): :mod:`kubeflat_checkers` runs Envoy on what they build.

Why: ``envoy --mode validate`` costs ~30 ms of CPU to start whatever the config (static
initialisation of the binary) and ~2 ms per sidecar config once started, and validates one
bootstrap per process. A bootstrap made of N sidecars costs one start instead of N.

What makes it exact (a merged bootstrap passes only if every file would pass alone):

* **Only what kubeflat renders is merged.** A file is *batchable* (:func:`plan`) only when

  - its path ends in ``.yaml``/``.yml`` (Envoy picks its parser from the extension);
  - its text is one YAML mapping that is byte-identical to
    :func:`kubeflat_manifests.dump_yaml` of what PyYAML loads from it: the merged text is
    written by the same function at the same depth, so every value Envoy reads from the
    merged text is written exactly as in the file (an anchor, a tag, a duplicate key, a
    YAML 1.1/1.2 ambiguity such as ``010`` or ``1:30`` cannot be read one way alone and
    another way merged: such a file is not canonical, hence validated alone). When the
    renderer hands over the :class:`kubeflat_manifests.Dumped` the text came from (a
    read-only copy of the document, dumped to exactly this text), that document is used
    instead of parsing the text: ``text == dump_yaml(doc)`` then holds by construction, which
    is all the argument above needs; any other text is parsed as before;
  - every key along the way is one :mod:`kubeflat_envoy` renders (:data:`LISTENER` and
    :data:`CLUSTER` below, a whitelist down to every field that can name a listener or a
    cluster; extensions are recognised by ``name`` *and* ``@type``; message values with no
    name in them are copied verbatim);
  - every name that is renamed is a non-empty string of letters, digits, ``_ . -`` (so the
    prefix cannot turn an empty or odd name into a valid one);
  - every listener address is exactly ``{socket_address: {address: <IPv4 in 127.0.0.0/8, in
    canonical form>, port_value: ...}}``, not the admin address, at most
    :data:`MAX_ADDRESSES` distinct IPs;
  - no string anywhere (key or value) starts with :data:`MARKER`;
  - the remainder (the bootstrap without ``static_resources.listeners`` and
    ``static_resources.clusters``) has only ``node`` and ``admin`` (``admin`` only
    ``address``), and ``static_resources`` only ``listeners`` and ``clusters`` (lists).

* **The remainder is included verbatim** and only files with the same remainder are merged
  (:func:`remainder_key`). One exception, needed for sidecars to merge at all: ``node.id``
  and ``node.cluster`` (each sidecar names its app there) are compared by shape, not value,
  when they are non-empty strings of the safe characters and ``node`` has no other key; the
  merged bootstrap carries the first file's node. Envoy documents both as opaque identifiers
  that only matter to features (statsd, CDS, HTTP tracing, health-check
  ``service_name_matcher``, runtime override directory, ``add_user_agent``, rate limiting)
  that the whitelist does not let through, so no verdict depends on their value.

* **Each file keeps its own names and addresses** (:func:`rewrite`): file *i* of a batch
  prefixes every listener name, cluster name, inline route-config name and every reference to
  a cluster (route ``cluster``, ``tcp_proxy`` ``cluster``, ``load_assignment.cluster_name``)
  with ``kfbatch<i>_``, and maps each distinct listener IP to its own fresh ``127.x.y.z``
  (ports unchanged). Both maps are injective and per file, so what is equal inside a file
  stays equal (a duplicate cluster, a duplicate listener address, a route to a cluster the
  file lacks: refused as alone), and nothing of one file can meet anything of another.

A refused batch is not a verdict: the caller validates each of its files alone, the deployed
bytes, and reports those Envoy refuses, with Envoy's own message on that file.
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import json
import re

import yaml

from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import Dumped, dump_yaml

__metaclass__ = type

FORMAT = 1                 # bump when the merge changes (it is part of the checker key)
BATCH_SIZE = 64            # configs per envoy process by default
MAX_BATCH_SIZE = 1024      # bounds the address space used (see MAX_ADDRESSES, FIRST_ADDRESS)
MAX_ADDRESSES = 256        # distinct listener IPs per file
MARKER = "kfbatch"         # per-file prefix: kfbatch<index>_
FIRST_ADDRESS = 1 << 16    # 127.1.0.0: mapped addresses never meet 127.0.0.1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class NotBatchable(Exception):
    """A file the merge does not understand; ``str()`` says where and why."""


# --- the whitelist -------------------------------------------------------------------------
# A shape is: VERBATIM (copied as is: a message in which nothing names a listener or a
# cluster); a name kind (CLUSTER_NAME, LISTENER_NAME, ROUTE_CONFIG_NAME: prefixed);
# LISTEN_ADDRESS (mapped); Exact(value); Repeated(shape); OneOf(key, {value: shape});
# a dict {key: shape} (a message: only these keys).

VERBATIM = "verbatim"
CLUSTER_NAME = "cluster name"
LISTENER_NAME = "listener name"
ROUTE_CONFIG_NAME = "route config name"
LISTEN_ADDRESS = "listener address"
_NAMES = (CLUSTER_NAME, LISTENER_NAME, ROUTE_CONFIG_NAME)


class Exact:
    """A value that must be exactly ``value`` (an extension's ``name`` or ``@type``)."""

    def __init__(self, value):
        self.value = value


class Repeated:
    """A list whose items all have ``shape``."""

    def __init__(self, shape):
        self.shape = shape


class OneOf:
    """A mapping whose ``key`` picks its shape among ``choices`` (``{value: shape}``)."""

    def __init__(self, key, choices):
        self.key, self.choices = key, choices


def _typed(name, type_url, fields):
    """An extension entry ``{name, typed_config: {"@type", **fields}}``."""
    config = dict(fields)
    config["@type"] = Exact("type.googleapis.com/" + type_url)
    return {"name": Exact(name), "typed_config": config}


_STDOUT_LOG = Repeated(OneOf("name", {"envoy.access_loggers.stdout": _typed(
    "envoy.access_loggers.stdout", "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    {"log_format": VERBATIM})}))
_RETRY_POLICY = {k: VERBATIM for k in (
    "retry_on", "num_retries", "per_try_timeout", "retry_host_predicate",
    "host_selection_retry_max_attempts", "retry_back_off")}
_ROUTE = {"match": VERBATIM, "direct_response": VERBATIM,
          "route": {"cluster": CLUSTER_NAME, "timeout": VERBATIM, "retry_policy": _RETRY_POLICY}}
_HTTP_FILTER = OneOf("name", {
    "envoy.filters.http.router": _typed(
        "envoy.filters.http.router", "envoy.extensions.filters.http.router.v3.Router", {}),
    "envoy.filters.http.health_check": _typed(
        "envoy.filters.http.health_check",
        "envoy.extensions.filters.http.health_check.v3.HealthCheck",
        {"pass_through_mode": VERBATIM, "headers": VERBATIM}),
})
_HCM = _typed(
    "envoy.filters.network.http_connection_manager",
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    {"stat_prefix": VERBATIM, "codec_type": VERBATIM, "use_remote_address": VERBATIM,
     "access_log": _STDOUT_LOG, "http_filters": Repeated(_HTTP_FILTER),
     "route_config": {"name": ROUTE_CONFIG_NAME, "virtual_hosts": Repeated(
         {"name": VERBATIM, "domains": VERBATIM, "routes": Repeated(_ROUTE)})}})
_TCP_PROXY = _typed(
    "envoy.filters.network.tcp_proxy", "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    {"stat_prefix": VERBATIM, "cluster": CLUSTER_NAME, "max_connect_attempts": VERBATIM,
     "access_log": _STDOUT_LOG})
LISTENER = {
    "name": LISTENER_NAME,
    "address": LISTEN_ADDRESS,
    "filter_chains": Repeated({"filters": Repeated(OneOf("name", {
        "envoy.filters.network.http_connection_manager": _HCM,
        "envoy.filters.network.tcp_proxy": _TCP_PROXY}))}),
}
_DNS_CLUSTER = _typed(
    "envoy.clusters.dns", "envoy.extensions.clusters.dns.v3.DnsCluster",
    {"all_addresses_in_single_endpoint": VERBATIM, "dns_lookup_family": VERBATIM,
     "dns_refresh_rate": VERBATIM, "respect_dns_ttl": VERBATIM,
     "typed_dns_resolver_config": VERBATIM})
_HEALTH_CHECK = {"timeout": VERBATIM, "interval": VERBATIM, "no_traffic_interval": VERBATIM,
                 "unhealthy_threshold": VERBATIM, "healthy_threshold": VERBATIM,
                 "http_health_check": {"path": VERBATIM, "host": VERBATIM},
                 "tcp_health_check": {}}
CLUSTER = {
    "name": CLUSTER_NAME,
    "type": Exact("STATIC"),  # EDS would name its resources after the (renamed) cluster
    "cluster_type": OneOf("name", {"envoy.clusters.dns": _DNS_CLUSTER}),
    "connect_timeout": VERBATIM,
    "lb_policy": VERBATIM,
    "load_assignment": {"cluster_name": CLUSTER_NAME, "endpoints": Repeated({
        "lb_endpoints": Repeated({"endpoint": {"address": {"socket_address": {
            "address": VERBATIM, "port_value": VERBATIM}}}})})},
    "health_checks": Repeated(_HEALTH_CHECK),
    "outlier_detection": VERBATIM,
    "circuit_breakers": VERBATIM,
}
_TOP_KEYS = frozenset(("node", "admin", "static_resources"))
_NODE_KEYS = frozenset(("id", "cluster"))


# --- one file --------------------------------------------------------------------------------

def file_marker(index):
    """The prefix of file ``index``'s names in a batch: ``kfbatch<index>_`` (the digits end
    at the ``_``, so two indexes never give one prefixed name)."""
    return "%s%d_" % (MARKER, index)


def mapped_address(number):
    """``127.x.y.z`` of ``number`` (``FIRST_ADDRESS <= number < 2**24``)."""
    if not FIRST_ADDRESS <= number < 1 << 24:
        raise ValueError("address number %r out of range" % (number,))
    return "127.%d.%d.%d" % (number >> 16, (number >> 8) & 255, number & 255)


class Rewrite:
    """One file's renaming: its ``marker``, and its listener IPs mapped to fresh addresses
    taken from ``numbers`` (an iterator shared by the files of a batch)."""

    def __init__(self, marker, numbers):
        self.marker = marker
        self.numbers = numbers
        self.addresses = {}   # original IP -> mapped IP
        self.sockets = []     # (original IP, port) of every listener

    def name(self, value, kind, where):
        """``value`` prefixed; a name that is not a safe non-empty string is refused."""
        if not isinstance(value, str) or not _SAFE_NAME.match(value):
            raise NotBatchable("%s: %s %r is not a plain name" % (where, kind, value))
        return self.marker + value

    def address(self, value, where):
        """A listener's address with its IP mapped (ports unchanged)."""
        if not isinstance(value, dict) or set(value) != {"socket_address"} or \
                not isinstance(value["socket_address"], dict) or \
                not set(value["socket_address"]) <= {"address", "port_value"} or \
                "address" not in value["socket_address"]:
            raise NotBatchable("%s: not a plain socket address" % where)
        socket = value["socket_address"]
        ip = socket["address"]
        try:
            parsed = ipaddress.IPv4Address(ip) if isinstance(ip, str) else None
        except ValueError:
            parsed = None
        if parsed is None or str(parsed) != ip or parsed not in _LOOPBACK:
            raise NotBatchable("%s: address %r is not an IPv4 loopback address" % (where, ip))
        if ip not in self.addresses:
            if len(self.addresses) >= MAX_ADDRESSES:
                raise NotBatchable("%s: more than %d listener IPs" % (where, MAX_ADDRESSES))
            self.addresses[ip] = mapped_address(next(self.numbers))
        self.sockets.append((ip, socket.get("port_value")))
        out = dict(socket)
        out["address"] = self.addresses[ip]
        return {"socket_address": out}


def rewrite(value, shape, rename, where="static_resources"):
    """``value`` (of ``shape``) with its names prefixed and listener addresses mapped by
    ``rename`` (a :class:`Rewrite`); raises :class:`NotBatchable` on anything the shape does
    not allow. ``value`` is not modified (unchanged parts are shared, not copied)."""
    if shape is VERBATIM:
        return value
    if shape in _NAMES:
        return rename.name(value, shape, where)
    if shape is LISTEN_ADDRESS:
        return rename.address(value, where)
    if isinstance(shape, Exact):
        if value != shape.value or type(value) is not type(shape.value):
            raise NotBatchable("%s: %r is not %r" % (where, value, shape.value))
        return value
    if isinstance(shape, Repeated):
        if not isinstance(value, list):
            raise NotBatchable("%s: not a list" % where)
        return [rewrite(item, shape.shape, rename, "%s[%d]" % (where, i))
                for i, item in enumerate(value)]
    if isinstance(shape, OneOf):
        choice = value.get(shape.key) if isinstance(value, dict) else None
        if not isinstance(choice, str) or choice not in shape.choices:
            raise NotBatchable("%s: %s %r is not one kubeflat renders"
                               % (where, shape.key, choice))
        return rewrite(value, shape.choices[choice], rename, where)
    if not isinstance(value, dict):
        raise NotBatchable("%s: not a mapping" % where)
    unknown = sorted(set(value) - set(shape), key=str)
    if unknown:
        raise NotBatchable("%s: field %r is not one kubeflat renders" % (where, unknown[0]))
    return {k: rewrite(v, shape[k], rename, "%s.%s" % (where, k)) for k, v in value.items()}


def marked(value, marker=MARKER):
    """True when a string anywhere in ``value`` (keys included) starts with ``marker``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.startswith(marker):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _abstract_node(node):
    """The node as compared between files: id/cluster by shape when they are safe names."""
    if isinstance(node, dict) and set(node) <= _NODE_KEYS and \
            all(isinstance(v, str) and _SAFE_NAME.match(v) for v in node.values()):
        return {k: "<name>" for k in node}
    return node


def remainder(doc):
    """The bootstrap ``doc`` without ``static_resources.listeners`` / ``clusters``."""
    out = {k: v for k, v in doc.items() if k != "static_resources"}
    rest = {k: v for k, v in (doc.get("static_resources") or {}).items()
            if k not in ("listeners", "clusters")}
    if rest:
        out["static_resources"] = rest
    return out


def remainder_key(doc):
    """Files merge only when this is equal: the remainder, node id/cluster by shape."""
    rest = remainder(doc)
    if "node" in rest:
        rest["node"] = _abstract_node(rest["node"])
    return json.dumps(rest, sort_keys=True, separators=(",", ":"))


def transform(doc, marker, numbers):
    """``(listeners, clusters, rewrite)`` of ``doc`` renamed with ``marker``, its listener
    IPs mapped to ``numbers``; raises :class:`NotBatchable`."""
    resources = doc.get("static_resources", {})
    rename = Rewrite(marker, numbers)
    listeners = rewrite(resources.get("listeners", []), Repeated(LISTENER), rename,
                        "static_resources.listeners")
    clusters = rewrite(resources.get("clusters", []), Repeated(CLUSTER), rename,
                       "static_resources.clusters")
    return listeners, clusters, rename


def _check_top(doc):
    if not isinstance(doc, dict):
        raise NotBatchable("not a YAML mapping")
    unknown = sorted(set(doc) - _TOP_KEYS, key=str)
    if unknown:
        raise NotBatchable("top-level field %r is not one kubeflat renders" % (unknown[0],))
    admin = doc.get("admin", {})
    if not isinstance(admin, dict) or not set(admin) <= {"address"}:
        raise NotBatchable("admin: only address is merged")
    resources = doc.get("static_resources", {})
    if not isinstance(resources, dict) or not set(resources) <= {"listeners", "clusters"}:
        raise NotBatchable("static_resources: only listeners and clusters are merged")
    for key in ("listeners", "clusters"):
        if key in resources and not isinstance(resources[key], list):
            raise NotBatchable("static_resources.%s: not a list" % key)


def _admin_socket(doc):
    try:
        socket = doc["admin"]["address"]["socket_address"]
        return socket["address"], socket.get("port_value")
    except (KeyError, TypeError, AttributeError):
        return None


def dumped_doc(text, dumped):
    """The document ``text`` was dumped from, when ``dumped`` (a
    :class:`kubeflat_manifests.Dumped`) is known to have been dumped to exactly ``text`` and
    kept a read-only copy; else None (the text must be parsed)."""
    if isinstance(dumped, Dumped) and dumped.doc is not None and dumped.text == text:
        return dumped.doc
    return None


def plan(rel, text, dumped=None):
    """``(doc, key)`` of a batchable file (its bootstrap and :func:`remainder_key`); raises
    :class:`NotBatchable` saying why ``rel`` must be validated alone. The bootstrap is the
    document of ``dumped`` when :func:`dumped_doc` trusts it for ``text``, else what PyYAML
    loads from ``text``, which must then dump back to ``text`` exactly."""
    if not rel.endswith((".yaml", ".yml")):
        raise NotBatchable("%s: not a .yaml file" % rel)
    doc = dumped_doc(text, dumped)
    parsed = doc is None
    if parsed:
        try:
            doc = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise NotBatchable("%s: YAML does not parse: %s" % (rel, exc))
    try:
        _check_top(doc)
        if parsed and dump_yaml(doc) != text:
            raise NotBatchable("not written as kubeflat writes YAML")
        if marked(doc):
            raise NotBatchable("a string starts with %r" % MARKER)
        rename = transform(doc, file_marker(0), iter(range(FIRST_ADDRESS, 1 << 24)))[2]
        if _admin_socket(doc) in rename.sockets:
            raise NotBatchable("a listener has the admin address")
    except NotBatchable as exc:
        raise NotBatchable("%s: %s" % (rel, exc))
    return doc, remainder_key(doc)


# --- a batch ---------------------------------------------------------------------------------

def merge(docs):
    """One bootstrap of the planned ``docs`` (same :func:`remainder_key`): the first one's
    remainder verbatim, then every file's listeners and clusters, file ``i`` renamed with
    :func:`file_marker` ``(i)`` and its listener IPs mapped to addresses of its own."""
    if not docs:
        raise ValueError("merge needs at least one bootstrap")
    if len(docs) > MAX_BATCH_SIZE:
        raise ValueError("at most %d bootstraps per batch" % MAX_BATCH_SIZE)
    numbers = iter(range(FIRST_ADDRESS, 1 << 24))
    listeners, clusters = [], []
    has = set()
    for index, doc in enumerate(docs):
        resources = doc.get("static_resources", {})
        has.update(k for k in ("listeners", "clusters") if k in resources)
        renamed = transform(doc, file_marker(index), numbers)
        listeners.extend(renamed[0])
        clusters.extend(renamed[1])
    out = remainder(docs[0])
    if has:
        resources = dict(out.get("static_resources", {}))
        if "listeners" in has:
            resources["listeners"] = listeners
        if "clusters" in has:
            resources["clusters"] = clusters
        out["static_resources"] = resources
    return out


def merged_text(docs):
    """The merged bootstrap as Envoy reads it (written as kubeflat writes its files)."""
    return dump_yaml(merge(docs))


def split(count, size, workers):
    """Slices ``(start, stop)`` cutting ``count`` files into batches of at most ``size``,
    at least ``workers`` of them when there are enough files (every CPU gets work), as even
    as possible."""
    if count <= 0:
        return []
    size = max(1, min(size, MAX_BATCH_SIZE))
    batches = max(-(-count // size), min(max(1, workers), count))
    return [(i * count // batches, (i + 1) * count // batches) for i in range(batches)]


__all__ = ["BATCH_SIZE", "CLUSTER", "FORMAT", "LISTENER", "MARKER", "MAX_BATCH_SIZE",
           "NotBatchable", "dumped_doc", "file_marker", "mapped_address", "marked", "merge",
           "merged_text", "plan", "remainder", "remainder_key", "rewrite", "split", "transform"]
