# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod routes owned by kubeflat: parse ``ip -json`` output, validate, plan, persist.

Pure functions, no I/O. The module ``kubeflat.cluster.converge`` gathers ``ip -json -details route
show table main`` and ``ip -json addr show``, calls :func:`plan_routes` and runs the commands
:func:`route_argv` returns.

Ownership: every route kubeflat installs carries a dedicated kernel route protocol
(:data:`PROTO_NUMBER`, named :data:`PROTO_NAME` in /etc/iproute2/rt_protos.d/kubeflat.conf).
Only routes with that protocol are ever replaced or deleted; a route with any other protocol
is *foreign* and is never touched. The default route and connected routes (scope link,
protocol kernel) are never planned for change, whatever the input.

A desired route is ``{"dest": "10.244.1.0/24", "via": "10.77.0.21", "node": "w1"}``
(``node`` is informative).
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import json

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import (
    CidrError, parse_address, parse_network)

__metaclass__ = type

PROTO_NUMBER = 201
PROTO_NAME = "kubeflat"
OWNED_PROTOCOLS = (str(PROTO_NUMBER), PROTO_NAME)
DEFAULT_DESTS = ("default", "0.0.0.0/0")


class RouteError(ValueError):
    """A desired route that must not be applied; the message names host, prefix and reason."""

    def __init__(self, host, prefix, reason):
        self.host = host
        self.prefix = prefix
        self.reason = reason
        super(RouteError, self).__init__("host %s, prefix %s: %s" % (host, prefix, reason))


def _load(data):
    """Accept ``ip -json`` output as text or as already-decoded JSON."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8")
    if isinstance(data, str):
        data = data.strip()
        return json.loads(data) if data else []
    if data is None:
        return []
    return data


def normalise_dest(dst):
    """``ip -json`` destination -> CIDR string (``default`` -> 0.0.0.0/0, host -> /32)."""
    if dst in DEFAULT_DESTS:
        return "0.0.0.0/0"
    text = str(dst)
    if "/" not in text:
        text += "/32"
    return str(ipaddress.ip_network(text, strict=False))


def parse_routes(data):
    """Parse ``ip -json [-details] route show table main`` into plain dicts.

    Each entry: ``dest`` (CIDR), ``via`` (gateway or None), ``dev``, ``protocol`` (string;
    ``boot`` when ip omits it), ``scope`` (``global`` when omitted), ``type`` (``unicast`` when
    omitted), ``owned`` (protocol is kubeflat's) and ``connected`` (a link-scope route the
    kernel made for an interface address). IPv6 entries are ignored.
    """
    out = []
    for raw in _load(data):
        dst = raw.get("dst")
        if dst is None or ":" in str(dst):
            continue
        proto = str(raw.get("protocol", "boot"))
        scope = raw.get("scope", "global")
        route = {
            "dest": normalise_dest(dst),
            "via": raw.get("gateway"),
            "dev": raw.get("dev"),
            "protocol": proto,
            "scope": scope,
            "type": raw.get("type", "unicast"),
        }
        route["owned"] = proto in OWNED_PROTOCOLS
        route["connected"] = scope == "link" or proto == "kernel"
        out.append(route)
    return out


def parse_addresses(data):
    """Parse ``ip -json addr show`` into the host's IPv4 interface addresses.

    Each entry: ``dev``, ``address``, ``network`` (the connected subnet, CIDR string).
    Loopback (host scope) addresses are kept but flagged ``loopback`` so callers can ignore
    them as gateways.
    """
    out = []
    for link in _load(data):
        for info in link.get("addr_info") or []:
            if info.get("family") != "inet":
                continue
            iface = ipaddress.ip_interface("%s/%s" % (info["local"], info["prefixlen"]))
            out.append({
                "dev": link.get("ifname"),
                "address": str(iface.ip),
                "network": str(iface.network),
                "loopback": info.get("scope") == "host",
            })
    return out


def validate_desired(host, desired):
    """Check the shape of the desired route list and return it normalised and sorted.

    Refuses: a destination that is not a CIDR or has host bits set, the default route, a
    gateway that is not an IPv4 address, and two routes to the same (or overlapping) prefix.
    """
    clean = []
    for i, item in enumerate(desired or []):
        if not isinstance(item, dict):
            raise RouteError(host, repr(item), "routes[%d] must be a dict with dest and via" % i)
        dest_raw, via_raw = item.get("dest"), item.get("via")
        try:
            dest = parse_network(dest_raw, "routes[%d].dest" % i)
        except CidrError as exc:
            raise RouteError(host, dest_raw, exc.reason)
        if dest.prefixlen == 0:
            raise RouteError(host, str(dest), "refusing to manage the default route")
        try:
            via = parse_address(via_raw, "routes[%d].via" % i)
        except CidrError as exc:
            raise RouteError(host, str(dest), "gateway %r: %s" % (via_raw, exc.reason))
        for other in clean:
            if ipaddress.ip_network(other["dest"]).overlaps(dest):
                raise RouteError(host, str(dest), "overlaps another desired route %s (node %s)"
                                 % (other["dest"], other.get("node") or "?"))
        clean.append({"dest": str(dest), "via": str(via), "node": item.get("node") or ""})
    clean.sort(key=lambda r: ipaddress.ip_network(r["dest"]))
    return clean


def check_against_host(host, desired, routes, addresses):
    """Refuse desired routes that would cut the host off or override someone else's route.

    ``desired`` is the output of :func:`validate_desired`; ``routes`` and ``addresses`` come
    from :func:`parse_routes` and :func:`parse_addresses`. Raises :class:`RouteError` for:

    - a gateway that is not on a subnet connected to the host (or is the host's own address),
    - a destination overlapping a network connected to the host,
    - a destination equal to a foreign (not kubeflat-owned) route's prefix.
    """
    connected = [a for a in addresses if not a["loopback"]]
    own = {a["address"] for a in addresses}
    connected_nets = [(a["dev"], ipaddress.ip_network(a["network"])) for a in connected]
    connected_nets += [(r["dev"], ipaddress.ip_network(r["dest"]))
                       for r in routes if r["connected"] and r["dest"] != "0.0.0.0/0"]
    for route in desired:
        dest = ipaddress.ip_network(route["dest"])
        via = ipaddress.ip_address(route["via"])
        if route["via"] in own:
            raise RouteError(host, route["dest"], "gateway %s is this host's own address"
                             % route["via"])
        if not any(via in net for _unused, net in connected_nets):
            raise RouteError(host, route["dest"],
                             "gateway %s is not on a subnet connected to this host (connected: %s)"
                             % (route["via"],
                                ", ".join(sorted({str(n) for _unused, n in connected_nets})) or "none"))
        for dev, net in connected_nets:
            if dest.overlaps(net):
                raise RouteError(host, route["dest"],
                                 "overlaps network %s connected to this host on %s" % (net, dev))
        for existing in routes:
            if existing["owned"] or existing["connected"]:
                continue
            if existing["dest"] == route["dest"]:
                raise RouteError(host, route["dest"],
                                 "a foreign route to the same prefix exists (%s, protocol %s); "
                                 "kubeflat does not replace routes it does not own"
                                 % (describe(existing), existing["protocol"]))


def describe(route):
    """One line for a route, as a person would write it."""
    if route.get("via"):
        return "%s via %s" % (route["dest"], route["via"])
    return "%s dev %s" % (route["dest"], route.get("dev"))


def plan_routes(host, desired, routes, addresses):
    """Validate and plan. Returns ``{"add", "replace", "delete", "keep"}`` (lists of routes).

    - add: desired, no owned route to that prefix yet;
    - replace: an owned route to that prefix exists with another gateway;
    - delete: owned routes whose prefix is no longer desired (stale, e.g. a node left);
    - keep: already right.
    Raises :class:`RouteError` before planning anything if any desired route is refused.
    """
    desired = validate_desired(host, desired)
    check_against_host(host, desired, routes, addresses)
    owned = {}
    for route in routes:
        if route["owned"] and not route["connected"] and route["dest"] != "0.0.0.0/0":
            owned.setdefault(route["dest"], []).append(route)
    plan = {"add": [], "replace": [], "delete": [], "keep": []}
    wanted = set()
    for route in desired:
        wanted.add(route["dest"])
        current = owned.get(route["dest"], [])
        if not current:
            plan["add"].append(route)
        elif len(current) == 1 and current[0]["via"] == route["via"]:
            plan["keep"].append(route)
        else:
            plan["replace"].append(route)
    for dest in sorted(owned, key=ipaddress.ip_network):
        if dest not in wanted:
            for route in owned[dest]:
                plan["delete"].append({"dest": dest, "via": route["via"], "dev": route["dev"]})
    return plan


def plan_changed(plan):
    """True when the plan changes the kernel route table."""
    return bool(plan["add"] or plan["replace"] or plan["delete"])


def route_argv(ip_path, action, route, proto=PROTO_NUMBER):
    """The ``ip`` command for one planned change, as an argument list.

    ``action`` is ``add``, ``replace`` or ``delete``; deletes always name the protocol, so the
    kernel itself refuses to delete anything that is not kubeflat's.
    """
    if action not in ("add", "replace", "delete"):
        raise ValueError("unknown action %r" % action)
    argv = [ip_path, "-4", "route", "del" if action == "delete" else action, route["dest"]]
    if route.get("via"):
        argv += ["via", route["via"]]
    argv += ["proto", str(proto), "table", "main"]
    return argv


def owned_lines(routes):
    """The owned routes of a parsed table as sorted ``dest via gw`` lines (for diffs)."""
    return sorted((describe(r) for r in routes if r["owned"] and not r["connected"]),
                  key=lambda line: ipaddress.ip_network(line.split()[0]))


def desired_lines(desired):
    """The desired routes as sorted ``dest via gw`` lines (for diffs)."""
    return [describe(r) for r in sorted(desired, key=lambda r: ipaddress.ip_network(r["dest"]))]


def batch_file(desired, proto=PROTO_NUMBER):
    """Content of the persistence file: an ``ip -batch`` script re-applied at boot.

    Comments are allowed by ``ip -batch``; the protocol is numeric so the file works even
    before /etc/iproute2/rt_protos.d is read.
    """
    lines = [
        "# Managed by kubeflat (module kubeflat.cluster.converge). Do not edit: the next run rewrites it.",
        "# Re-applied at boot by kubeflat-pod-routes.service with `ip -batch`; every route",
        "# carries protocol %d (%s) so kubeflat only ever touches its own routes." % (
            proto, PROTO_NAME),
    ]
    for route in sorted(desired, key=lambda r: ipaddress.ip_network(r["dest"])):
        comment = "  # node %s" % route["node"] if route.get("node") else ""
        lines.append("route replace %s via %s proto %d table main%s"
                     % (route["dest"], route["via"], proto, comment))
    return "\n".join(lines) + "\n"


def rt_protos_file(proto=PROTO_NUMBER, name=PROTO_NAME):
    """Content of /etc/iproute2/rt_protos.d/kubeflat.conf."""
    return ("# Managed by kubeflat: routes it owns carry this protocol.\n%d\t%s\n"
            % (proto, name))


# --------------------------------------------------------------------------- per-host route set
PERSIST_PATH = "/etc/kubeflat/pod-routes.batch"
RT_PROTOS_PATH = "/etc/iproute2/rt_protos.d/kubeflat.conf"
UNIT_NAME = "kubeflat-pod-routes"


def managed_host(model, host):
    """Whether kubeflat owns pod routes on ``host``: every outside host, and every node in
    static mode (flannel and Cilium program node routes themselves)."""
    if host in [h["name"] for h in model.get("outside_hosts") or []]:
        return True
    return model.get("cni") == "static" and host in (model.get("node_names") or [])


def host_route_set(model, host, source_routes=None):
    """The complete kubeflat route set of ``host``, or None when kubeflat owns no routes there.

    ``source_routes`` (default: the model's ``pod_routes``) are ``{dest, via, node}`` items,
    e.g. discovered from a running cluster. A node never routes to its own pod CIDR (it is
    connected on the CNI bridge)."""
    if not managed_host(model, host):
        return None
    routes = model["pod_routes"] if source_routes is None else source_routes
    routes = [dict(r) for r in routes if r.get("node") != host]
    if (model.get("bgp") or {}).get("enabled"):
        # Racks: direct routes only to the nodes on this host's own segment; every other pod
        # CIDR is reached through the default gateway (the rack router learned it over BGP).
        # An outside host on a segment without nodes therefore gets an empty set.
        segment = host_segment(model, host)
        if segment is None:
            return []
        net = ipaddress.ip_network(segment)
        routes = [r for r in routes if ipaddress.ip_address(r["via"]) in net]
    return routes


def host_segment(model, host):
    """The host network ``host`` (node or outside host) lives on, or None."""
    for entry in list(model.get("nodes") or []) + list(model.get("outside_hosts") or []):
        if entry["name"] == host:
            return entry.get("network")
    return None


def boot_unit(persist_path=PERSIST_PATH):
    """The systemd oneshot unit that re-applies the route set from ``persist_path`` at boot.

    Ordered after the interfaces are configured and before anything waiting for
    network-online.target, so services that talk to pods find their routes. ``ip`` is found on
    systemd's fixed search path (systemd >= 239), so one unit fits merged and split /usr."""
    return "\n".join([
        "# Managed by kubeflat. Re-applies the static routes to pod CIDRs that kubeflat owns",
        "# (kernel route protocol %d, \"%s\") from %s at boot, without Ansible." % (
            PROTO_NUMBER, PROTO_NAME, persist_path),
        "[Unit]",
        "Description=kubeflat pod routes (static routes to every node's pod CIDR)",
        "Documentation=file://%s" % persist_path,
        "DefaultDependencies=no",
        "Wants=network.target",
        "After=network.target networking.service systemd-networkd-wait-online.service "
        "NetworkManager-wait-online.service",
        "Before=network-online.target shutdown.target",
        "Conflicts=shutdown.target",
        "ConditionPathExists=%s" % persist_path,
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "# -force applies every line and still exits non-zero if any route failed.",
        "ExecStart=ip -force -batch %s" % persist_path,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def route_items(model, host, source_routes=None, persist_path=PERSIST_PATH, unit_name=UNIT_NAME):
    """Arguments of ``kubeflat.cluster.converge`` for the routes a host owns: the route set, its boot
    unit file and the unit to enable. None when kubeflat owns no routes on ``host``."""
    routes = host_route_set(model, host, source_routes)
    if routes is None:
        return None
    unit = "%s.service" % unit_name
    return {
        "routes": {"routes": routes, "persist_path": persist_path},
        "files": [{"path": "/etc/systemd/system/%s" % unit, "content": boot_unit(persist_path)}],
        "units": [{"name": unit}],
    }
