# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A picture of the flat network: the cluster model (and live routes) in, a graph out.

* :func:`live_routes` picks, per host, the freshest route check of this run out of the
  registered ``kubeflat.cluster.converge`` results (``__outside_routes_result``/``_plan``,
  ``__cni_static_result``/``_plan``) and returns the kubeflat routes the host *has*;
* :func:`build_graph` turns the model and those live routes into a plain description:
  segments (L2 networks, racks with BGP), nodes with their pod CIDRs, outside hosts, rack
  routers, BGP sessions and every expected route with its status;
* :func:`to_dot` writes that description as Graphviz DOT text (``dot -Tsvg`` / ``-Tpng``
  draw it). Output is deterministic: the same inputs give the same bytes;
* :func:`load_seen`, :func:`remember` and :func:`dump_seen` keep each host's last checked
  routes between runs (a file beside the picture), so a tag run that checks only some hosts
  (``--tags network``: the nodes) draws the others as they were last seen, and two converged
  runs with different tags draw the same picture.

Route status, per expected route (``host -> gateway node``, from the model's route set of
that host, ``kubeflat_routes.host_route_set``):

``present``  the host has it (as last checked);
``missing``  the host was checked and has no route to that prefix (drawn dashed red);
``wrong``    the host routes that prefix via another gateway (orange);
``expected`` the host's routes were never checked (grey: what the model says);
``stale``    a kubeflat route the host has that the model no longer wants (dotted grey).
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import json

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import host_route_set

__metaclass__ = type

# Registered results that carry a host's kubeflat routes, freshest first in a site.yml run:
# the routes stage runs after the network stage, an apply after its check.
LIVE_REGISTERS = ("__outside_routes_result", "__outside_routes_plan",
                  "__cni_static_result", "__cni_static_plan")
STATUSES = ("present", "missing", "wrong", "expected", "stale")
STYLE = {
    "present": {"color": "#2e7d32", "style": "solid", "penwidth": "1.4"},
    "missing": {"color": "#d32f2f", "style": "dashed", "penwidth": "2.2"},
    "wrong": {"color": "#ef6c00", "style": "dashed", "penwidth": "2.2"},
    "expected": {"color": "#9e9e9e", "style": "solid", "penwidth": "1.0"},
    "stale": {"color": "#757575", "style": "dotted", "penwidth": "1.6"},
}
# Above this many routes, routes that are fine (present/expected) are summed up in each host's
# label instead of drawn one by one; problems are always drawn.
MAX_ROUTE_EDGES = 120


class DiagramError(ValueError):
    """An input the diagram cannot draw (names what and why)."""


# --------------------------------------------------------------------------- live routes
def _lines_of(routes):
    return [dict(r) for r in routes or []]


def _route(dest, via):
    return {"dest": str(dest), "via": str(via)}


def parse_line(line):
    """``"dest via gw"`` -> ``{"dest", "via"}`` (``via`` is None for ``dest dev X``)."""
    words = str(line).split()
    if not words:
        raise DiagramError("empty route line")
    try:
        dest = str(ipaddress.ip_network(words[0], strict=False))
    except ValueError:
        raise DiagramError("route line %r: %r is not a prefix" % (line, words[0]))
    via = words[words.index("via") + 1] if "via" in words[:-1] else None
    return {"dest": dest, "via": via}


def _usable(result):
    return isinstance(result, dict) and not result.get("failed") \
        and not result.get("skipped") and not result.get("unreachable")


def have_from_result(result):
    """The kubeflat routes a host has, from one registered ``kubeflat.cluster.converge`` result, or
    None when the result says nothing about them.

    An applied (``check_mode`` false) result's ``routes`` are read back from the kernel after
    the change, or, when nothing changed, equal the wanted set; a check's ``plan`` tells what the
    host had before: ``keep`` (right), ``replace`` (another gateway; the old one is taken from
    the diff when it is there), ``delete`` (stale); ``add`` are missing.
    """
    if not _usable(result):
        return None
    plan = result.get("plan")
    checked_only = result.get("check_mode", True) or not result.get("pending", True)
    if isinstance(plan, dict) and checked_only and ("keep" in plan or "add" in plan):
        have = [_route(r["dest"], r.get("via")) for r in plan.get("keep") or []]
        have += [_route(r["dest"], r.get("via")) for r in plan.get("delete") or []]
        old = _diff_before(result)
        for route in plan.get("replace") or []:
            was = [r for r in old if r["dest"] == route["dest"]]
            have += was or [_route(route["dest"], "?")]
        return sorted(have, key=_route_key)
    if isinstance(result.get("routes"), list):
        return sorted((parse_line(line) for line in result["routes"]), key=_route_key)
    return None


def _diff_before(result):
    """Route lines of the ``before`` side of the module's route diff (the kernel's table)."""
    out = []
    for entry in result.get("diff") or []:
        if isinstance(entry, dict) and "kubeflat routes" in str(entry.get("before_header", "")):
            for line in str(entry.get("before") or "").splitlines():
                if line.strip():
                    try:
                        out.append(parse_line(line))
                    except DiagramError:
                        continue
    return out


def live_routes(registered, registers=LIVE_REGISTERS):
    """``{host: {register: result}}`` -> ``{host: [routes it has]}`` for every host whose
    routes were checked in this run (the first usable register in ``registers`` wins)."""
    out = {}
    for host in sorted(registered or {}):
        results = registered[host] or {}
        for name in registers:
            have = have_from_result(results.get(name))
            if have is not None:
                out[host] = have
                break
    return out


# --------------------------------------------------------------------------- memory
def _seen_routes(value):
    """A remembered host entry as a route list, or None when it is not one."""
    if not isinstance(value, list):
        return None
    out = []
    for route in value:
        if not isinstance(route, dict) or not isinstance(route.get("dest"), str) or \
                not isinstance(route.get("via"), (str, type(None))):
            return None
        out.append({"dest": route["dest"], "via": route["via"]})
    return sorted(out, key=_route_key)


def load_seen(text, hosts):
    """``{host: [routes]}`` remembered by earlier runs (the memory file's ``text``), for the
    hosts in ``hosts`` only (a host that left the inventory is forgotten). Anything unreadable
    is forgotten too: the host is then drawn as the model expects it until it is checked."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    hosts_seen = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts_seen, dict):
        return {}
    out = {}
    for host in hosts:
        routes = _seen_routes(hosts_seen.get(host))
        if routes is not None:
            out[host] = routes
    return out


def remember(seen, live):
    """The routes to draw: this run's checks (``live``) over what earlier runs saw."""
    merged = dict(seen or {})
    merged.update(live or {})
    return merged


def dump_seen(seen):
    """Text of the memory file (deterministic)."""
    return json.dumps({"hosts": seen}, indent=1, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- the graph
def _route_key(route):
    return (ipaddress.ip_network(route["dest"]), str(route.get("via")))


def _owner_of(model):
    """{address: host name} of every node and outside host."""
    owners = {}
    for entry in list(model.get("nodes") or []) + list(model.get("outside_hosts") or []):
        owners[entry["address"]] = entry["name"]
    return owners


def _routers(model):
    """Rack routers (BGP peers) as ``{address: {"address", "asns", "segment"}}``."""
    bgp = model.get("bgp") or {}
    routers = {}
    if not bgp.get("enabled"):
        return routers
    peer_lists = [(r["network"], r.get("peers") or []) for r in bgp.get("racks") or []]
    peer_lists += [(n["network"], n.get("peers") or [])
                   for _unused, n in sorted((bgp.get("nodes") or {}).items())]
    for network, peers in peer_lists:
        for peer in peers:
            entry = routers.setdefault(peer["address"], {"address": peer["address"],
                                                         "asns": [], "segment": network})
            if peer.get("asn") not in entry["asns"]:
                entry["asns"].append(peer.get("asn"))
    return routers


def _host_routes(model, host, have, owners):
    """The route entries of one host: every expected route with its status, then stale ones."""
    expected = host_route_set(model, host)
    if expected is None:
        expected = []
    checked = have is not None
    by_dest = {}
    for route in have or []:
        by_dest.setdefault(route["dest"], []).append(route.get("via"))
    out = []
    wanted = set()
    for route in sorted(expected, key=_route_key):
        wanted.add(route["dest"])
        vias = by_dest.get(route["dest"], [])
        if not checked:
            status = "expected"
        elif route["via"] in vias and len(vias) == 1:
            status = "present"
        elif vias:
            status = "wrong"
        else:
            status = "missing"
        out.append({"host": host, "dest": route["dest"], "via": route["via"],
                    "gateway": owners.get(route["via"]) or route["via"],
                    "node": route.get("node"), "status": status,
                    "actual_via": [v for v in vias if v != route["via"]]})
    for route in sorted(have or [], key=_route_key):
        if route["dest"] not in wanted:
            out.append({"host": host, "dest": route["dest"], "via": route.get("via"),
                        "gateway": owners.get(route.get("via")) or route.get("via"),
                        "node": None, "status": "stale", "actual_via": []})
    return out


def build_graph(model, live=None, max_route_edges=MAX_ROUTE_EDGES):
    """The picture as data. ``live`` is ``{host: [{"dest", "via"}]}`` (see :func:`live_routes`)
    for the hosts checked (this run or remembered); hosts not in it are drawn as the model expects them.
    """
    if not isinstance(model, dict) or "nodes" not in model:
        raise DiagramError("kubeflat_model is not a cluster model (no nodes): %r"
                           % (type(model).__name__,))
    live = live or {}
    owners = _owner_of(model)
    bgp = model.get("bgp") or {}
    racks = {r["network"]: r for r in bgp.get("racks") or []} if bgp.get("enabled") else {}
    routers = _routers(model)
    segments = []
    for network in sorted(model.get("host_networks") or [], key=ipaddress.ip_network):
        rack = racks.get(network)
        segments.append({"network": network, "rack": rack["name"] if rack else None,
                         "asn": rack.get("asn") if rack else None,
                         "nodes": [n["name"] for n in model["nodes"] if n["network"] == network],
                         "outside": [h["name"] for h in model.get("outside_hosts") or []
                                     if h["network"] == network],
                         "routers": sorted((a for a, r in routers.items()
                                            if r["segment"] == network),
                                           key=ipaddress.ip_address)})
    hosts = []
    routes = []
    for entry in list(model["nodes"]) + list(model.get("outside_hosts") or []):
        name = entry["name"]
        mine = _host_routes(model, name, live.get(name), owners)
        routes.extend(mine)
        counts = {s: len([r for r in mine if r["status"] == s]) for s in STATUSES}
        kind = "outside" if "control_plane" not in entry else (
            "control_plane" if entry["control_plane"] else "worker")
        hosts.append({"name": name, "kind": kind, "address": entry["address"],
                      "network": entry["network"], "pod_cidr": entry.get("pod_cidr"),
                      "checked": name in live, "routes": counts,
                      "bgp_asn": ((bgp.get("nodes") or {}).get(name) or {}).get("asn")})
    # Gateways of stale routes that are nobody in the inventory (a node that left).
    unknown = sorted({r["via"] for r in routes if r["via"] and r["via"] not in owners
                      and r["via"] not in routers and r["via"] != "?"},
                     key=ipaddress.ip_address)
    sessions = []
    for name, node in sorted((bgp.get("nodes") or {}).items()) if bgp.get("enabled") else []:
        for peer in node.get("peers") or []:
            sessions.append({"node": name, "router": peer["address"]})
    draw_all = len(routes) <= max_route_edges
    for route in routes:
        route["drawn"] = draw_all or route["status"] not in ("present", "expected")
    return {"cluster_name": model.get("cluster_name"), "cni": model.get("cni"),
            "pod_cidr": model.get("pod_cidr"), "bgp": bool(bgp.get("enabled")),
            "segments": segments, "hosts": hosts, "routers": [routers[a] for a in sorted(
                routers, key=ipaddress.ip_address)], "unknown_gateways": unknown,
            "routes": routes, "sessions": sessions, "all_routes_drawn": draw_all,
            "checked_hosts": sorted(live)}


def _has_via(route):
    return " (has via %s)" % ", ".join(route["actual_via"]) if route["actual_via"] else ""


def summary(graph):
    """Counts per route status, and one line per route that is not right."""
    counts = {s: len([r for r in graph["routes"] if r["status"] == s]) for s in STATUSES}
    problems = ["%s: %s %s via %s%s" % (r["host"], r["status"], r["dest"], r["via"], _has_via(r))
                for r in graph["routes"] if r["status"] in ("missing", "wrong", "stale")]
    return counts, problems


# --------------------------------------------------------------------------- DOT
def quote(text):
    """A DOT double-quoted string."""
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _attrs(**attrs):
    return "[%s]" % ", ".join("%s=%s" % (k, quote(v)) for k, v in sorted(attrs.items())
                              if v is not None)


def _host_id(name):
    return "host:%s" % name


def _router_id(address):
    return "router:%s" % address


def _host_label(host):
    lines = [host["name"], host["address"]]
    if host["kind"] == "outside":
        lines.append("outside host")
    else:
        lines.append("pods %s" % host["pod_cidr"])
        lines.append("control plane" if host["kind"] == "control_plane" else "worker")
    if host["bgp_asn"]:
        lines.append("AS %s" % host["bgp_asn"])
    counts = host["routes"]
    total = sum(counts[s] for s in ("present", "missing", "wrong", "expected"))
    if total or counts["stale"]:
        if host["checked"]:
            parts = ["%d/%d routes present" % (counts["present"], total)]
            parts += ["%d %s" % (counts[s], s) for s in ("missing", "wrong", "stale") if counts[s]]
            lines.append(", ".join(parts))
        else:
            lines.append("%d routes (never checked)" % total)
    return "\n".join(lines)


HOST_STYLE = {
    "control_plane": {"shape": "box", "style": "rounded,filled", "fillcolor": "#bbdefb"},
    "worker": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e3f2fd"},
    "outside": {"shape": "component", "style": "filled", "fillcolor": "#fff9c4"},
}


def _segment_lines(graph, segment, index):
    title = "segment %s" % segment["network"]
    if segment["rack"]:
        title = "rack %s: %s" % (segment["rack"], segment["network"])
        if segment["asn"]:
            title += " (AS %s)" % segment["asn"]
    attrs = _attrs(label=title, id="segment:%s" % segment["network"], style="rounded",
                   color="#607d8b", fontname="DejaVu Sans")
    lines = ["  subgraph %s {" % quote("cluster_%d" % index), "    graph %s;" % attrs]
    hosts = {h["name"]: h for h in graph["hosts"]}
    for name in segment["nodes"] + segment["outside"]:
        host = hosts[name]
        lines.append("    %s %s;" % (quote(_host_id(name)), _attrs(
            label=_host_label(host), id=_host_id(name), tooltip=name,
            **{"class": "host %s" % host["kind"]}, **HOST_STYLE[host["kind"]])))
    routers = {r["address"]: r for r in graph["routers"]}
    for address in segment["routers"]:
        router = routers[address]
        asns = ", ".join("AS %s" % a for a in router["asns"] if a)
        lines.append("    %s %s;" % (quote(_router_id(address)), _attrs(
            label="router\n%s%s" % (address, "\n" + asns if asns else ""),
            id=_router_id(address), shape="octagon", style="filled", fillcolor="#e0e0e0",
            **{"class": "router"})))
    lines.append("  }")
    return lines


def _route_label(route):
    if route["status"] == "present":
        return route["dest"]
    if route["status"] == "expected":
        return "%s (expected)" % route["dest"]
    if route["status"] == "wrong":
        return "WRONG %s via %s (has via %s)" % (route["dest"], route["via"],
                                                 ", ".join(route["actual_via"]))
    if route["status"] == "stale":
        return "stale %s via %s" % (route["dest"], route["via"])
    return "MISSING %s via %s" % (route["dest"], route["via"])


def to_dot(graph):
    """The graph as Graphviz DOT text (deterministic)."""
    counts, _unused = summary(graph)
    title = "kubeflat cluster %s: cni %s, pod network %s%s" % (
        graph["cluster_name"], graph["cni"], graph["pod_cidr"], ", BGP racks" if graph["bgp"]
        else "")
    if graph["checked_hosts"]:
        state = "routes as last checked on %d host(s): %s" % (
            len(graph["checked_hosts"]), ", ".join("%d %s" % (counts[s], s) for s in STATUSES
                                                   if counts[s]) or "none expected")
    else:
        state = "no routes checked yet: drawn as the model expects them"
    if not graph["all_routes_drawn"]:
        state += "\n(%d routes: only routes that are not right are drawn; counts in each host)" \
            % len(graph["routes"])
    lines = ["digraph kubeflat_network {",
             "  %s;" % " ".join("%s=%s" % (k, quote(v)) for k, v in (
                 ("label", title + "\n" + state), ("labelloc", "t"), ("fontname", "DejaVu Sans"),
                 ("rankdir", "LR"), ("nodesep", "0.4"), ("ranksep", "1.0"),
                 ("id", "kubeflat-network"))),
             "  node %s;" % _attrs(fontname="DejaVu Sans", fontsize="11"),
             "  edge %s;" % _attrs(fontname="DejaVu Sans", fontsize="9")]
    for index, segment in enumerate(graph["segments"]):
        lines.extend(_segment_lines(graph, segment, index))
    for address in graph["unknown_gateways"]:
        lines.append("  %s %s;" % (quote("gateway:%s" % address), _attrs(
            label="%s\n(not in the inventory)" % address, id="gateway:%s" % address,
            shape="box", style="dashed", color="#757575", **{"class": "gateway unknown"})))
    owners = {h["name"] for h in graph["hosts"]}
    for session in graph["sessions"]:
        lines.append("  %s -> %s %s;" % (
            quote(_host_id(session["node"])), quote(_router_id(session["router"])), _attrs(
                label="BGP", dir="both", color="#1565c0", style="dotted", fontcolor="#1565c0",
                id="bgp:%s:%s" % (session["node"], session["router"]),
                **{"class": "bgp"})))
    for route in graph["routes"]:
        if not route["drawn"]:
            continue
        gateway = route["gateway"]
        target = _host_id(gateway) if gateway in owners else "gateway:%s" % route["via"]
        if route["via"] == "?":
            continue
        style = STYLE[route["status"]]
        lines.append("  %s -> %s %s;" % (quote(_host_id(route["host"])), quote(target), _attrs(
            label=_route_label(route), fontcolor=style["color"],
            id="route:%s:%s" % (route["host"], route["dest"]),
            tooltip="%s: %s via %s (%s)" % (route["host"], route["dest"], route["via"],
                                            route["status"]),
            **{"class": "route %s" % route["status"]}, **style)))
    lines.append("  %s %s;" % (quote("legend"), _attrs(
        shape="note", fontsize="9", id="legend", label="routes: green = present, "
        "red dashed = MISSING, orange dashed = WRONG gateway,\ngrey = expected (never "
        "checked), grey dotted = stale, blue dotted = BGP session")))
    lines.append("}")
    return "\n".join(lines) + "\n"
