# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod CIDRs announced over BGP to rack routers: the model part and the builders, as data.

Racks are host networks. With ``kubeflat_bgp: true`` every node announces exactly its own pod
CIDR to the router(s) of its rack over eBGP; the routed fabric carries the rest. Inside a rack
nodes still route to each other directly (static mode), across racks traffic follows the
node's default gateway, the rack router, which learned the other racks' pod CIDRs.

* :func:`build_bgp` validates the BGP inputs against the rest of the model and returns the
  model's ``bgp`` entry (``{"enabled": False}`` when BGP is off);
* :func:`bird_config` is the BIRD 2 configuration of one node (static mode);
* :func:`cilium_bgp_objects` are the Cilium BGP Control Plane v2 objects (cilium mode);
* :func:`cilium_bgp_values` the chart values BGP needs.

Invalid input raises :class:`BgpError` (variable, value, reason), before anything changes.
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import re

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

__metaclass__ = type

ASN_MODES = ("rack", "node")
# CNIs that can carry pod CIDRs across routers with BGP, and how.
BGP_CNIS = {"static": "static mode with BIRD on every node",
            "cilium": "Cilium's BGP Control Plane"}
# 0 and 65535 / 4294967295 are reserved (RFC 7607, RFC 7300); 23456 is AS_TRANS (RFC 6793).
RESERVED_ASNS = (0, 23456, 65535, 4294967295)
MAX_ASN = 4294967295
DEFAULTS = {
    "bgp": False,
    "bgp_racks": [],
    "bgp_asn_mode": "rack",
    "bgp_hold_time": 9,
    "bgp_keepalive_time": 3,
    "bgp_connect_retry_time": 5,
    "bgp_bfd": False,
    "bgp_password": False,
}
_PASSWORD_RE = re.compile(r'^[\x21\x23-\x5b\x5d-\x7e]{1,80}$')   # printable, no '"', '\\', space
PROTO_STATIC = "kubeflat_pod_cidr"
FILTER_EXPORT = "kubeflat_export"


class BgpError(InputError):
    """An invalid BGP input; ``str()`` names the variable, the value and the reason."""


# --------------------------------------------------------------------------- checks
def check_asn(value, var):
    """An ASN (1..4294967295 without the reserved values); int or digit string."""
    if isinstance(value, bool) or value in (None, ""):
        raise BgpError(var, value, "must be an AS number (1-4294967295)")
    try:
        asn = int(value)
    except (TypeError, ValueError):
        raise BgpError(var, value, "must be an AS number (1-4294967295)")
    if str(asn) != str(value).strip():
        raise BgpError(var, value, "must be an AS number (1-4294967295)")
    if not 1 <= asn <= MAX_ASN:
        raise BgpError(var, value, "must be between 1 and %d" % MAX_ASN)
    if asn in RESERVED_ASNS:
        raise BgpError(var, value, "is a reserved AS number (0, 23456 AS_TRANS, 65535, "
                       "4294967295 are not usable)")
    return asn


def check_password(value, var="kubeflat_bgp_password"):
    """A TCP MD5 password BIRD and Cilium both accept; returns it (or None when empty)."""
    if value in (None, "", False):
        return None
    if not isinstance(value, str) or not _PASSWORD_RE.match(value):
        raise BgpError(var, "(hidden)", "must be 1-80 printable characters without spaces, "
                       "quotes or backslashes")
    return value


def _int(value, var, low, high):
    if isinstance(value, bool):
        raise BgpError(var, value, "must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BgpError(var, value, "must be an integer")
    if str(number) != str(value).strip() or not low <= number <= high:
        raise BgpError(var, value, "must be an integer between %d and %d" % (low, high))
    return number


def _address(value, var):
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except (ValueError, ipaddress.AddressValueError):
        raise BgpError(var, value, "must be an IPv4 address")


def _peers(raw, var, network, taken):
    """Peers ``[{address, asn}]`` on ``network``; ``taken`` maps host addresses to hosts."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise BgpError(var, raw, "must be a non-empty list of {address, asn} (the rack "
                       "router(s) the nodes peer with)")
    out = []
    for i, peer in enumerate(raw):
        pvar = "%s[%d]" % (var, i)
        if not isinstance(peer, dict) or set(peer) - {"address", "asn"}:
            raise BgpError(pvar, peer, "must be a mapping with exactly address and asn")
        addr = _address(peer.get("address"), pvar + ".address")
        if addr not in network:
            raise BgpError(pvar + ".address", str(addr), "is not on the rack's network %s: "
                           "nodes peer with a router on their own segment" % network)
        if addr in (network.network_address, network.broadcast_address):
            raise BgpError(pvar + ".address", str(addr), "is the network or broadcast "
                           "address of %s" % network)
        if str(addr) in taken:
            raise BgpError(pvar + ".address", str(addr), "is the address of inventory host %s;"
                           " a BGP peer must be a router, not a node or outside host"
                           % taken[str(addr)])
        if str(addr) in [p["address"] for p in out]:
            raise BgpError(pvar + ".address", str(addr), "listed twice")
        out.append({"address": str(addr), "asn": check_asn(peer.get("asn"), pvar + ".asn")})
    return out


def build_bgp(settings, cni, host_networks, nodes, outside, host_bgp=None):
    """The model's ``bgp`` entry (see the module docstring).

    ``settings``: the ``kubeflat_bgp*`` inputs without the ``kubeflat_`` prefix; ``nodes`` and
    ``outside``: the model's node and outside-host entries (``name``, ``address``,
    ``network``, nodes with ``pod_cidr``); ``host_bgp``: per node name the host variables
    ``{"asn", "router_id", "peers"}`` (``kubeflat_bgp_asn``, ``kubeflat_bgp_router_id``,
    ``kubeflat_bgp_peers``).
    """
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in (settings or {}).items() if v is not None})
    host_bgp = host_bgp or {}
    enabled = cfg["bgp"]
    if not isinstance(enabled, bool):
        raise BgpError("kubeflat_bgp", enabled, "must be true or false")
    racks_raw = cfg["bgp_racks"]
    if not enabled:
        if racks_raw:
            raise BgpError("kubeflat_bgp_racks", "(%d racks)" % len(racks_raw),
                           "is set but kubeflat_bgp is false; set kubeflat_bgp: true to "
                           "announce pod CIDRs to the rack routers, or remove the racks")
        for name, hv in sorted(host_bgp.items()):
            for key in ("asn", "router_id", "peers"):
                if hv.get(key) not in (None, "", []):
                    raise BgpError("kubeflat_bgp_%s of %s" % (key, name), hv[key],
                                   "is set but kubeflat_bgp is false")
        return {"enabled": False}
    if cni not in BGP_CNIS:
        raise BgpError("kubeflat_cni", cni, "cannot announce pod CIDRs over BGP (flannel "
                       "host-gw only routes within one L2 segment); use kubeflat_cni: static "
                       "(%s) or cilium (%s)" % (BGP_CNIS["static"], BGP_CNIS["cilium"]))
    mode = cfg["bgp_asn_mode"]
    if mode not in ASN_MODES:
        raise BgpError("kubeflat_bgp_asn_mode", mode, "must be one of %s" % ", ".join(ASN_MODES))
    hold = _int(cfg["bgp_hold_time"], "kubeflat_bgp_hold_time", 3, 65535)
    keepalive = _int(cfg["bgp_keepalive_time"], "kubeflat_bgp_keepalive_time", 1, 21845)
    if keepalive * 3 > hold:
        raise BgpError("kubeflat_bgp_keepalive_time", keepalive, "must be at most a third of "
                       "kubeflat_bgp_hold_time (%d)" % hold)
    retry = _int(cfg["bgp_connect_retry_time"], "kubeflat_bgp_connect_retry_time", 1, 65535)
    bfd = cfg["bgp_bfd"]
    if not isinstance(bfd, bool):
        raise BgpError("kubeflat_bgp_bfd", bfd, "must be true or false")
    if bfd and cni == "cilium":
        raise BgpError("kubeflat_bgp_bfd", bfd, "Cilium's BGP Control Plane (v2 CRDs, 1.19) "
                       "has no BFD; turn it off with kubeflat_cni: cilium")
    networks = [ipaddress.ip_network(n) for n in host_networks]
    taken = {}
    for host in list(nodes) + list(outside):
        taken[host["address"]] = host["name"]

    if not isinstance(racks_raw, (list, tuple)) or not racks_raw:
        raise BgpError("kubeflat_bgp_racks", racks_raw, "must list every rack (host network "
                       "with nodes) with its router peers when kubeflat_bgp is true")
    racks = []
    by_network = {}
    for i, rack in enumerate(racks_raw):
        var = "kubeflat_bgp_racks[%d]" % i
        if not isinstance(rack, dict) or set(rack) - {"network", "asn", "peers", "name"}:
            raise BgpError(var, rack, "must be a mapping of network, peers, asn (and name)")
        try:
            net = ipaddress.ip_network(str(rack.get("network")), strict=True)
        except ValueError:
            raise BgpError(var + ".network", rack.get("network"), "must be a CIDR like "
                           "10.0.1.0/24 without host bits")
        if net not in networks:
            raise BgpError(var + ".network", str(net), "is not one of kubeflat_host_networks "
                           "(%s)" % ", ".join(str(n) for n in networks))
        if str(net) in by_network:
            raise BgpError(var + ".network", str(net), "listed twice in kubeflat_bgp_racks")
        asn = rack.get("asn")
        if mode == "rack":
            asn = check_asn(asn, var + ".asn")
        elif asn not in (None, ""):
            asn = check_asn(asn, var + ".asn")
        else:
            asn = None
        entry = {"name": str(rack.get("name") or "rack%d" % (i + 1)), "network": str(net),
                 "asn": asn, "peers": _peers(rack.get("peers"), var + ".peers", net, taken),
                 "nodes": []}
        by_network[str(net)] = entry
        racks.append(entry)
    names = [r["name"] for r in racks]
    for i, name in enumerate(names):
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$", name):
            raise BgpError("kubeflat_bgp_racks[%d].name" % i, name, "must be a DNS label of "
                           "at most 32 characters")
        if names.index(name) != i:
            raise BgpError("kubeflat_bgp_racks[%d].name" % i, name, "listed twice")

    out_nodes = {}
    router_ids = {}
    node_asns = {}
    for node in nodes:
        name = node["name"]
        rack = by_network.get(node["network"])
        if rack is None:
            raise BgpError("kubeflat_bgp_racks", "%s=%s" % (name, node["network"]),
                           "node %s is on %s, which has no entry in kubeflat_bgp_racks (its "
                           "router peers and ASN)" % (name, node["network"]))
        hv = host_bgp.get(name) or {}
        if hv.get("asn") not in (None, ""):
            asn = check_asn(hv["asn"], "kubeflat_bgp_asn of %s" % name)
        elif mode == "node":
            raise BgpError("kubeflat_bgp_asn of %s" % name, None, "kubeflat_bgp_asn_mode is "
                           "node: every node needs its own kubeflat_bgp_asn")
        else:
            asn = rack["asn"]
        if mode == "node":
            if asn in node_asns:
                raise BgpError("kubeflat_bgp_asn of %s" % name, asn, "also used by node %s "
                               "(kubeflat_bgp_asn_mode node: one ASN per node)"
                               % node_asns[asn])
            node_asns[asn] = name
        rid = hv.get("router_id") or node["address"]
        rid_var = "kubeflat_bgp_router_id of %s" % name
        rid_addr = _address(rid, rid_var)
        if rid_addr.is_unspecified:
            raise BgpError(rid_var, str(rid), "0.0.0.0 is not a router ID")
        if str(rid_addr) in router_ids:
            raise BgpError(rid_var, str(rid_addr), "router ID also used by node %s"
                           % router_ids[str(rid_addr)])
        router_ids[str(rid_addr)] = name
        if hv.get("peers") not in (None, "", []):
            if cni == "cilium":
                raise BgpError("kubeflat_bgp_peers of %s" % name, hv["peers"], "per-node peers "
                               "are not supported with Cilium (a CiliumBGPClusterConfig peers "
                               "per rack); set the peers on the rack in kubeflat_bgp_racks")
            peers = _peers(hv["peers"], "kubeflat_bgp_peers of %s" % name,
                           ipaddress.ip_network(node["network"]), taken)
        else:
            peers = rack["peers"]
        for peer in peers:
            if peer["asn"] == asn:
                raise BgpError("kubeflat_bgp_asn of %s" % name, asn, "equals the ASN of its "
                               "peer %s: kubeflat speaks eBGP to the rack routers, give the "
                               "nodes their own ASN" % peer["address"])
        rack["nodes"].append(name)
        out_nodes[name] = {"asn": asn, "router_id": str(rid_addr), "address": node["address"],
                           "rack": rack["name"], "network": node["network"],
                           "pod_cidr": node["pod_cidr"], "peers": peers}
    for rack in racks:
        if not rack["nodes"]:
            raise BgpError("kubeflat_bgp_racks", rack["network"], "no node is on this "
                           "network; list only racks with nodes (outside hosts need no entry)")
    return {"enabled": True, "asn_mode": mode, "hold_time": hold, "keepalive_time": keepalive,
            "connect_retry_time": retry, "bfd": bfd, "password": bool(cfg["bgp_password"]),
            "racks": racks, "nodes": out_nodes}


def routed_outside_hosts(model):
    """Outside hosts on a segment without nodes: with BGP their gateway knows the pod CIDRs,
    so they need no per-node routes. Empty when BGP is off."""
    if not (model.get("bgp") or {}).get("enabled"):
        return []
    with_nodes = {n["network"] for n in model["nodes"]}
    return [h["name"] for h in model.get("outside_hosts") or [] if h["network"] not in with_nodes]


# --------------------------------------------------------------------------- BIRD (static mode)
def _proto_name(address):
    return "kf_" + address.replace(".", "_")


def bird_config(model, node_name, password=None):
    """The complete /etc/bird/bird.conf of one node (text), or None when BGP is off or the
    host is not a node.

    The node announces exactly its own pod CIDR (a static ``blackhole`` route that lives only
    inside BIRD) and imports nothing. There is no ``protocol kernel``, so BIRD never writes the
    node's kernel routing table; ``protocol device`` only reads interfaces."""
    bgp = model.get("bgp") or {}
    node = (bgp.get("nodes") or {}).get(node_name)
    if not bgp.get("enabled") or node is None:
        return None
    password = check_password(password)
    lines = [
        "# Managed by kubeflat (role bgp_bird). Do not edit: the next run rewrites it.",
        "# Node %s (rack %s, %s) announces exactly its own pod CIDR %s to its rack"
        % (node_name, node["rack"], node["network"], node["pod_cidr"]),
        "# router(s) and imports nothing. There is no `protocol kernel`: BIRD never writes",
        "# this node's kernel routing table (the pod CIDR is on the CNI bridge; other racks",
        "# are reached through the default gateway, the rack router).",
        "log syslog all;",
        "router id %s;" % node["router_id"],
        "",
        "protocol device {",
        "}",
        "",
    ]
    if bgp.get("bfd"):
        lines += ["protocol bfd kubeflat_bfd {", "}", ""]
    lines += [
        "# Exists only inside BIRD (no kernel protocol exports it).",
        "protocol static %s {" % PROTO_STATIC,
        "  ipv4;",
        "  route %s blackhole;" % node["pod_cidr"],
        "}",
        "",
        "filter %s {" % FILTER_EXPORT,
        "  if proto = \"%s\" && net = %s then accept;" % (PROTO_STATIC, node["pod_cidr"]),
        "  reject;",
        "}",
    ]
    for peer in node["peers"]:
        lines += [
            "",
            "protocol bgp %s {" % _proto_name(peer["address"]),
            "  description \"rack router %s (AS %d)\";" % (peer["address"], peer["asn"]),
            "  local %s as %d;" % (node["address"], node["asn"]),
            "  neighbor %s as %d;" % (peer["address"], peer["asn"]),
            "  hold time %d;" % bgp["hold_time"],
            "  keepalive time %d;" % bgp["keepalive_time"],
            "  connect retry time %d;" % bgp["connect_retry_time"],
            "  error wait time %d, %d;" % (bgp["connect_retry_time"],
                                           max(60, bgp["connect_retry_time"])),
            "  # A stopped node must lose its prefix at once, not after a restart timer.",
            "  graceful restart off;",
        ]
        if bgp.get("bfd"):
            lines.append("  bfd on;")
        if password:
            lines.append("  password \"%s\";" % password)
        lines += [
            "  ipv4 {",
            "    import none;",
            "    export filter %s;" % FILTER_EXPORT,
            "  };",
            "}",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Cilium
CILIUM_API = "cilium.io/v2"
ADVERTISE_LABEL = {"kubeflat.io/advertise": "pod-cidr"}


def _k8s_name(text):
    return re.sub(r"[^a-z0-9-]", "-", str(text).lower()).strip("-")


def cilium_bgp_values(model):
    """Chart values BGP needs: the BGP Control Plane on, and direct node routes only to
    nodes on the same segment (``directRoutingSkipUnreachable``); {} when BGP is off."""
    if not (model.get("bgp") or {}).get("enabled"):
        return {}
    return {"bgpControlPlane": {"enabled": True}, "autoDirectNodeRoutes": True,
            "directRoutingSkipUnreachable": True}


def cilium_bgp_objects(model, auth_secret=""):
    """CiliumBGPClusterConfig (one per rack, selecting its nodes by hostname),
    CiliumBGPPeerConfig (timers, families, optional auth secret), CiliumBGPAdvertisement
    (``PodCIDR``) and one CiliumBGPNodeConfigOverride per node (router ID, local address,
    and the local ASN when it differs from the rack's). [] when BGP is off."""
    bgp = model.get("bgp") or {}
    if not bgp.get("enabled"):
        return []
    peer_config = "kubeflat-%s" % _k8s_name(model["cluster_name"])
    spec = {
        "timers": {"holdTimeSeconds": bgp["hold_time"],
                   "keepAliveTimeSeconds": bgp["keepalive_time"],
                   "connectRetryTimeSeconds": bgp["connect_retry_time"]},
        "gracefulRestart": {"enabled": False},
        "families": [{"afi": "ipv4", "safi": "unicast",
                      "advertisements": {"matchLabels": dict(ADVERTISE_LABEL)}}],
    }
    if auth_secret:
        spec["authSecretRef"] = auth_secret
    objects = [
        {"apiVersion": CILIUM_API, "kind": "CiliumBGPAdvertisement",
         "metadata": {"name": "%s-pod-cidr" % peer_config, "labels": dict(ADVERTISE_LABEL)},
         "spec": {"advertisements": [{"advertisementType": "PodCIDR"}]}},
        {"apiVersion": CILIUM_API, "kind": "CiliumBGPPeerConfig",
         "metadata": {"name": peer_config}, "spec": spec},
    ]
    for rack in bgp["racks"]:
        instance = {"name": _k8s_name(rack["name"]),
                    "peers": [{"name": "router-%s" % p["address"].replace(".", "-"),
                               "peerASN": p["asn"], "peerAddress": p["address"],
                               "peerConfigRef": {"name": peer_config}} for p in rack["peers"]]}
        if rack["asn"] is not None:
            instance["localASN"] = rack["asn"]
        objects.append({
            "apiVersion": CILIUM_API, "kind": "CiliumBGPClusterConfig",
            "metadata": {"name": "%s-%s" % (peer_config, _k8s_name(rack["name"]))},
            "spec": {"nodeSelector": {"matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "In",
                "values": sorted(rack["nodes"])}]},
                "bgpInstances": [instance]}})
    for name in sorted(bgp["nodes"]):
        node = bgp["nodes"][name]
        rack = next(r for r in bgp["racks"] if r["name"] == node["rack"])
        override = {"name": _k8s_name(rack["name"]), "routerID": node["router_id"],
                    "peers": [{"name": "router-%s" % p["address"].replace(".", "-"),
                               "localAddress": node["address"]} for p in rack["peers"]]}
        if node["asn"] != rack["asn"]:
            override["localASN"] = node["asn"]
        objects.append({"apiVersion": CILIUM_API, "kind": "CiliumBGPNodeConfigOverride",
                        "metadata": {"name": name}, "spec": {"bgpInstances": [override]}})
    return objects
