# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kubeflat cluster model: inventory inputs in, one validated description of the cluster out.

This is the single place where cluster facts are derived. The preflight play calls it once
(module ``kubeflat_cluster_model``) and every role reads the result (fact ``kubeflat_model``).

Inputs
------
``settings`` (cluster-wide, the ``kubeflat_*`` inventory variables without the prefix)::

    cluster_name, distribution, cni, pod_cidr, service_cidr, node_pod_prefix, cluster_domain,
    host_networks, control_plane_ha, apiserver_port, apiserver_lb_port,
    control_plane_endpoint, kube_proxy_replacement, dns_mode,
    bgp, bgp_racks, bgp_asn_mode, bgp_hold_time, bgp_keepalive_time, bgp_connect_retry_time,
    bgp_bfd, bgp_password (a bool: whether a password is set; the password stays out of the model)

``hosts``: a list of ``{"name", "groups", "address", "pod_cidr"}`` (``pod_cidr`` optional;
``bgp_asn``, ``bgp_router_id``, ``bgp_peers`` per node, only when set),
one per inventory host, as produced by the ``kubeflat_host_inputs`` filter.

Output (all plain JSON types; nodes sorted by name)::

    {
      "cluster_name": "lab", "distribution": "kubeadm", "cni": "static",
      "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12", "node_pod_prefix": 24,
      "cluster_domain": "cluster.local", "host_networks": ["10.77.0.0/24"],
      "dns_service_ip": "10.96.0.10", "kubernetes_service_ip": "10.96.0.1",
      "dns_mode": "control_planes", "cluster_dns": ["10.77.0.11"],
      "control_plane_ha": false, "kube_proxy_replacement": false,
      "apiserver": {"port": 6443, "lb_port": 7443, "endpoint": "127.0.0.1:7443",
                    "endpoint_host": "127.0.0.1", "endpoint_port": 7443,
                    "backends": ["10.77.0.11:6443"]},
      "nodes": [{"name": "cp1", "address": "10.77.0.11", "pod_cidr": "10.244.0.0/24",
                 "pod_gateway": "10.244.0.1", "network": "10.77.0.0/24",
                 "control_plane": true, "pod_cidr_source": "declared"}, ...],
      "node_names": [...], "control_planes": [...], "workers": [...],
      "outside_hosts": [{"name": "db1", "address": "10.77.0.31", "network": "10.77.0.0/24"}],
      "segments": {"10.77.0.0/24": ["cp1", "w1", "w2"]},
      "l2_adjacent": true, "non_adjacent_nodes": [],
      "pod_routes": [{"dest": "10.244.0.0/24", "via": "10.77.0.11", "node": "cp1"}, ...],
      "bgp": {"enabled": false}      # with kubeflat_bgp: see kubeflat_bgp.build_bgp
    }
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

import ipaddress

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import (
    CidrError, check_usable, first_overlap, gateway_address, network_containing, nth_subnet,
    parse_address, parse_network, subnet_count, subnet_index)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_names import label_problem, name_problem
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_bgp

__metaclass__ = type

DISTRIBUTIONS = ("kubeadm", "talos", "none")
CNIS = ("static", "flannel", "cilium")
# CNIs that route pod traffic directly node-to-node and therefore need one L2 segment.
DIRECT_ROUTING_CNIS = {"static": "static mode", "flannel": "flannel host-gw",
                       "cilium": "cilium autoDirectNodeRoutes"}
CONTROL_PLANE_GROUP = "kube_control_plane"
WORKER_GROUP = "kube_node"
CLUSTER_GROUP = "k8s_cluster"
OUTSIDE_GROUP = "k8s_outside"
# Cluster DNS: "control_planes" = pods resolve through the control-plane node addresses, where
# the CoreDNS DaemonSet (hostNetwork) listens; "service" = through the DNS service VIP (.10).
DNS_MODES = ("control_planes", "service")
# resolv.conf (glibc MAXNS) and the kubelet use at most three nameservers.
MAX_DNS_SERVERS = 3

DEFAULTS = {
    "cluster_name": "kubeflat",
    "distribution": "kubeadm",
    "cni": "static",
    "pod_cidr": "10.244.0.0/16",
    "service_cidr": "10.96.0.0/12",
    "node_pod_prefix": 24,
    "cluster_domain": "cluster.local",
    "host_networks": [],
    "control_plane_ha": None,
    "apiserver_port": 6443,
    "apiserver_lb_port": 7443,
    "control_plane_endpoint": "",
    "kube_proxy_replacement": None,
    "dns_mode": None,
}
# Per-host BGP inputs (host_inputs key -> kubeflat_bgp.build_bgp key).
HOST_BGP_KEYS = {"bgp_asn": "asn", "bgp_router_id": "router_id", "bgp_peers": "peers"}


class ModelError(InputError):
    """Invalid inventory input. ``str()`` names the variable, the value and the reason."""


def _cidr(value, var, strict=True, usable=True):
    """A network; with ``usable``, none that is or overlaps an IANA special-purpose range."""
    try:
        net = parse_network(value, var, strict=strict)
        return check_usable(net, var, value) if usable else net
    except CidrError as exc:
        raise ModelError(exc.var, exc.value, exc.reason)


def _addr(value, var, shown=None):
    """A unicast address outside the special-purpose ranges (``shown`` is the value named)."""
    try:
        return check_usable(parse_address(value, var), var, value if shown is None else shown)
    except CidrError as exc:
        raise ModelError(exc.var, exc.value, exc.reason)


def _dns_name(value, var, what):
    reason = name_problem(value)
    if reason:
        raise ModelError(var, value, "%s (%s)" % (reason, what))
    return value


def _int(value, var, low, high):
    if isinstance(value, bool):
        raise ModelError(var, value, "must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ModelError(var, value, "must be an integer")
    if str(number) != str(value).strip():
        raise ModelError(var, value, "must be an integer")
    if not low <= number <= high:
        raise ModelError(var, value, "must be between %d and %d" % (low, high))
    return number


def _choice(value, var, choices):
    if value not in choices:
        raise ModelError(var, value, "must be one of %s" % ", ".join(choices))
    return value


def _validate_name(name):
    reason = label_problem(name)
    if reason:
        raise ModelError("kubeflat_cluster_name", name, reason)
    return name


def _split_endpoint(value, default_port):
    """``host[:port]`` -> (host, port)."""
    text = str(value).strip()
    if text.startswith("https://"):
        text = text[len("https://"):]
    if ":" in text:
        host, port = text.rsplit(":", 1)
        port = _int(port, "kubeflat_control_plane_endpoint", 1, 65535)
    else:
        host, port = text, default_port
    if not host:
        raise ModelError("kubeflat_control_plane_endpoint", value, "empty host")
    try:
        parse_address(host, "kubeflat_control_plane_endpoint")
    except CidrError:
        reason = name_problem(host)
        if reason:
            raise ModelError("kubeflat_control_plane_endpoint", value,
                             "host %r is neither an IPv4 address nor a DNS name: %s"
                             % (host, reason))
    return host, port


def build_model(settings, hosts):
    """Validate inventory inputs and return the cluster model (see module docstring).

    Raises :class:`ModelError` on the first invalid input, before anything is changed anywhere.
    The steps below run in this order, so the first refusal is always the same one.
    """
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in (settings or {}).items() if v is not None})

    name = _validate_name(cfg["cluster_name"])
    distribution = _choice(cfg["distribution"], "kubeflat_distribution", DISTRIBUTIONS)
    cni = _choice(cfg["cni"], "kubeflat_cni", CNIS)
    pod_cidr, service_cidr, domain, node_prefix = _cluster_networks(cfg)
    apiserver_port, lb_port = _apiserver_ports(cfg)
    host_networks = _host_networks(cfg["host_networks"], pod_cidr, service_cidr)
    nodes, outside = _hosts(hosts, host_networks, pod_cidr, service_cidr)
    control_planes = [n["name"] for n in nodes if n["control_plane"]]
    if not control_planes and distribution != "none":
        raise ModelError(CONTROL_PLANE_GROUP, [], "no control plane host: the group is empty "
                         "or missing")
    if not nodes:
        raise ModelError(CLUSTER_GROUP, [], "no cluster nodes in the inventory")
    ha = _control_plane_ha(cfg["control_plane_ha"], distribution, control_planes)
    _assign_pod_cidrs(nodes, pod_cidr, node_prefix)
    bgp = _bgp(cfg, cni, host_networks, nodes, outside, hosts)
    segments, l2_adjacent, non_adjacent = _adjacency(nodes, cni, bgp["enabled"])
    kpr = _kube_proxy_replacement(cfg["kube_proxy_replacement"], cni)

    cp_addresses = [n["address"] for n in nodes if n["control_plane"]]
    endpoint_host, endpoint_port = _api_endpoint(cfg["control_plane_endpoint"], distribution,
                                                 cp_addresses, apiserver_port, lb_port)
    service_base = int(service_cidr.network_address)
    dns_service_ip = str(ipaddress.ip_address(service_base + 10))
    dns_mode, cluster_dns = _cluster_dns(cfg["dns_mode"], cp_addresses, dns_service_ip)
    model = {
        "cluster_name": name,
        "distribution": distribution,
        "cni": cni,
        "pod_cidr": str(pod_cidr),
        "service_cidr": str(service_cidr),
        "node_pod_prefix": node_prefix,
        "cluster_domain": domain,
        "host_networks": [str(n) for n in host_networks],
        "kubernetes_service_ip": str(ipaddress.ip_address(service_base + 1)),
        "dns_service_ip": dns_service_ip,
        "dns_mode": dns_mode,
        "cluster_dns": cluster_dns,
        "control_plane_ha": ha,
        "kube_proxy_replacement": kpr,
        "apiserver": {
            "port": apiserver_port,
            "lb_port": lb_port,
            "endpoint_host": endpoint_host,
            "endpoint_port": endpoint_port,
            "endpoint": "%s:%d" % (endpoint_host, endpoint_port),
            "backends": ["%s:%d" % (a, apiserver_port) for a in cp_addresses],
        },
        "nodes": nodes,
        "node_names": [n["name"] for n in nodes],
        "control_planes": control_planes,
        "workers": [n["name"] for n in nodes if not n["control_plane"]],
        "outside_hosts": outside,
        "segments": segments,
        "l2_adjacent": l2_adjacent,
        "non_adjacent_nodes": non_adjacent if not l2_adjacent else [],
        "pod_routes": [{"dest": n["pod_cidr"], "via": n["address"], "node": n["name"]}
                       for n in nodes],
        "bgp": bgp,
    }
    return model


def _cluster_networks(cfg):
    """(pod CIDR, service CIDR, cluster domain, node pod prefix), checked against each other."""
    pod_cidr = _cidr(cfg["pod_cidr"], "kubeflat_pod_cidr")
    service_cidr = _cidr(cfg["service_cidr"], "kubeflat_service_cidr")
    domain = cfg["cluster_domain"]
    if name_problem(domain):
        raise ModelError("kubeflat_cluster_domain", domain, "must be a DNS domain like "
                         "cluster.local: %s" % name_problem(domain))
    node_prefix = _int(cfg["node_pod_prefix"], "kubeflat_node_pod_prefix", 1, 30)
    if node_prefix <= pod_cidr.prefixlen:
        raise ModelError("kubeflat_node_pod_prefix", node_prefix,
                         "must be longer than the prefix of kubeflat_pod_cidr %s" % pod_cidr)
    if pod_cidr.overlaps(service_cidr):
        raise ModelError("kubeflat_service_cidr", str(service_cidr),
                         "overlaps kubeflat_pod_cidr %s" % pod_cidr)
    if service_cidr.prefixlen < 12:
        raise ModelError("kubeflat_service_cidr", str(service_cidr),
                         "larger than /12 (kube-apiserver refuses more than 2^20 service IPs)")
    if service_cidr.num_addresses < 16:
        raise ModelError("kubeflat_service_cidr", str(service_cidr),
                         "too small: needs room for the kubernetes and DNS service IPs (/28 or larger)")
    return pod_cidr, service_cidr, domain, node_prefix


def _apiserver_ports(cfg):
    """(kube-apiserver port, node-local API load balancer port)."""
    apiserver_port = _int(cfg["apiserver_port"], "kubeflat_apiserver_port", 1, 65535)
    lb_port = _int(cfg["apiserver_lb_port"], "kubeflat_apiserver_lb_port", 1, 65535)
    if lb_port == apiserver_port:
        raise ModelError("kubeflat_apiserver_lb_port", lb_port,
                         "must differ from kubeflat_apiserver_port (both listen on control planes)")
    return apiserver_port, lb_port


def _host_networks(raw_networks, pod_cidr, service_cidr):
    """``kubeflat_host_networks`` as networks: none overlapping another or a cluster CIDR."""
    if not isinstance(raw_networks, (list, tuple)) or not raw_networks:
        raise ModelError("kubeflat_host_networks", raw_networks,
                         "must be a non-empty list of the L2 networks the hosts live on")
    host_networks = []
    for i, value in enumerate(raw_networks):
        net = _cidr(value, "kubeflat_host_networks[%d]" % i)
        clash = first_overlap(net, [("kubeflat_host_networks[%d]" % j, other)
                                    for j, other in enumerate(host_networks)])
        if clash:
            raise ModelError("kubeflat_host_networks[%d]" % i, str(net),
                             "overlaps %s %s" % (clash[0], clash[1]))
        for label, cluster_net in (("kubeflat_pod_cidr", pod_cidr),
                                   ("kubeflat_service_cidr", service_cidr)):
            if net.overlaps(cluster_net):
                raise ModelError(label, str(cluster_net),
                                 "collides with host network %s (kubeflat_host_networks[%d])"
                                 % (net, i))
        host_networks.append(net)
    return host_networks


def _hosts(hosts, host_networks, pod_cidr, service_cidr):
    """(nodes, outside hosts), each sorted by name; hosts in neither group are skipped.
    A node still carries ``declared_pod_cidr`` (popped by :func:`_assign_pod_cidrs`)."""
    seen_names = set()
    seen_addresses = {}
    nodes = []
    outside = []
    for host in hosts or []:
        hname = host.get("name")
        groups = set(host.get("groups") or [])
        if hname in seen_names:
            raise ModelError("inventory_hostname", hname, "listed twice")
        seen_names.add(hname)
        is_cp = CONTROL_PLANE_GROUP in groups
        is_worker = WORKER_GROUP in groups
        is_node = is_cp or is_worker or CLUSTER_GROUP in groups
        is_outside = OUTSIDE_GROUP in groups
        if not (is_node or is_outside):
            continue
        if is_node and is_outside:
            raise ModelError("groups", hname, "host is both a cluster node and in %s "
                             "(an outside host must not be a node)" % OUTSIDE_GROUP)
        if CLUSTER_GROUP in groups and not (is_cp or is_worker):
            raise ModelError("groups", hname, "in %s but in neither %s nor %s"
                             % (CLUSTER_GROUP, CONTROL_PLANE_GROUP, WORKER_GROUP))
        if is_node:
            _dns_name(hname, "inventory_hostname", "it becomes the Kubernetes Node name")
        address, network = _host_address(host, hname, seen_addresses, host_networks,
                                         pod_cidr, service_cidr)
        entry = {"name": hname, "address": str(address), "network": str(network)}
        if is_node:
            entry["control_plane"] = is_cp
            entry["declared_pod_cidr"] = host.get("pod_cidr") or None
            nodes.append(entry)
        else:
            if host.get("pod_cidr"):
                raise ModelError("kubeflat_node_pod_cidr", "%s=%s" % (hname, host["pod_cidr"]),
                                 "set on a host that is not a cluster node")
            outside.append(entry)
    nodes.sort(key=lambda n: n["name"])
    outside.sort(key=lambda n: n["name"])
    return nodes, outside


def _host_address(host, hname, seen_addresses, host_networks, pod_cidr, service_cidr):
    """(address, host network) of one host: unique, a usable address of one host network,
    outside the cluster CIDRs. Records it in ``seen_addresses``."""
    if host.get("address") in (None, ""):
        raise ModelError("ansible_host", hname, "host has no address (set ansible_host "
                         "or kubeflat_node_address)")
    address = _addr(host["address"], "ansible_host of %s" % hname)
    if address in seen_addresses:
        raise ModelError("ansible_host", str(address), "used by both %s and %s"
                         % (seen_addresses[address], hname))
    seen_addresses[address] = hname
    network = network_containing(address, host_networks)
    if network is None:
        raise ModelError("ansible_host", "%s=%s" % (hname, address),
                         "is in none of kubeflat_host_networks %s"
                         % ", ".join(str(n) for n in host_networks))
    if address in (network.network_address, network.broadcast_address):
        raise ModelError("ansible_host", "%s=%s" % (hname, address),
                         "is the network or broadcast address of %s" % network)
    for label, cluster_net in (("kubeflat_pod_cidr", pod_cidr),
                               ("kubeflat_service_cidr", service_cidr)):
        if address in cluster_net:
            raise ModelError("ansible_host", "%s=%s" % (hname, address),
                             "lies inside %s %s" % (label, cluster_net))
    return address, network


def _control_plane_ha(ha, distribution, control_planes):
    """HA on/off (auto: more than one control plane); HA needs an odd number >= 3."""
    if ha is None:
        ha = len(control_planes) > 1
    if not isinstance(ha, bool):
        raise ModelError("kubeflat_control_plane_ha", ha, "must be true or false")
    if ha and distribution != "none":
        if len(control_planes) < 3 or len(control_planes) % 2 == 0:
            raise ModelError("kubeflat_control_plane_ha", ha,
                             "HA needs an odd number (>= 3) of control planes for etcd quorum, "
                             "%s has %d: %s" % (CONTROL_PLANE_GROUP, len(control_planes),
                                                ", ".join(control_planes)))
    elif not ha and len(control_planes) > 1 and distribution != "none":
        raise ModelError("kubeflat_control_plane_ha", ha,
                         "%d control planes given but HA is off; set kubeflat_control_plane_ha: "
                         "true" % len(control_planes))
    return ha


def _assign_pod_cidrs(nodes, pod_cidr, node_prefix):
    """Give every node ``pod_cidr`` (declared, checked; else the lowest free subnet in name
    order), ``pod_cidr_source`` and ``pod_gateway``, in place."""
    capacity = subnet_count(pod_cidr, node_prefix)
    if len(nodes) > capacity:
        raise ModelError("kubeflat_node_pod_prefix", node_prefix,
                         "%s split into /%d gives %d node subnets, but there are %d nodes"
                         % (pod_cidr, node_prefix, capacity, len(nodes)))
    taken = {}
    for node in nodes:
        declared = node.pop("declared_pod_cidr")
        if not declared:
            continue
        var = "kubeflat_node_pod_cidr of %s" % node["name"]
        net = _cidr(declared, var)
        if not net.subnet_of(pod_cidr):
            raise ModelError(var, declared, "outside kubeflat_pod_cidr %s" % pod_cidr)
        if net.prefixlen != node_prefix:
            raise ModelError(var, declared, "prefix must be /%d (kubeflat_node_pod_prefix)"
                             % node_prefix)
        for other_name, other in taken.items():
            if net.overlaps(other):
                raise ModelError(var, declared, "overlaps the pod CIDR %s of node %s"
                                 % (other, other_name))
        taken[node["name"]] = net
        node["pod_cidr"] = str(net)
        node["pod_cidr_source"] = "declared"
    used = {subnet_index(pod_cidr, node_prefix, net) for net in taken.values()}
    index = 0
    for node in nodes:
        if "pod_cidr" in node:
            continue
        while index in used:
            index += 1
        net = nth_subnet(pod_cidr, node_prefix, index)
        used.add(index)
        node["pod_cidr"] = str(net)
        node["pod_cidr_source"] = "allocated"
    for node in nodes:
        node["pod_gateway"] = str(gateway_address(_cidr(node["pod_cidr"], "pod_cidr",
                                                        usable=False)))


def _adjacency(nodes, cni, bgp_enabled):
    """(segments {network: [node names]}, l2_adjacent, nodes off the largest segment).
    Direct-routing CNIs need one segment unless BGP announces the pod CIDRs."""
    segments = {}
    for node in nodes:
        segments.setdefault(node["network"], []).append(node["name"])
    largest = max(segments.values(), key=len) if segments else []
    non_adjacent = sorted(n["name"] for n in nodes if n["name"] not in largest)
    l2_adjacent = len(segments) <= 1
    if not l2_adjacent and cni in DIRECT_ROUTING_CNIS and not bgp_enabled:
        detail = "; ".join("%s: %s" % (net, ", ".join(names))
                           for net, names in sorted(segments.items()))
        raise ModelError("kubeflat_cni", cni,
                         "%s needs every node on one L2 segment, but nodes %s are not adjacent "
                         "to the others (%s); across segments (racks) announce pod CIDRs over "
                         "BGP: kubeflat_bgp: true with kubeflat_cni static or cilium"
                         % (DIRECT_ROUTING_CNIS[cni], ", ".join(non_adjacent), detail))
    return segments, l2_adjacent, non_adjacent


def _kube_proxy_replacement(kpr, cni):
    """kube-proxy replacement on/off (auto: on with Cilium); only Cilium can do it."""
    if kpr is None:
        kpr = cni == "cilium"
    if not isinstance(kpr, bool):
        raise ModelError("kubeflat_kube_proxy_replacement", kpr, "must be true or false")
    if kpr and cni != "cilium":
        raise ModelError("kubeflat_kube_proxy_replacement", kpr,
                         "only Cilium can replace kube-proxy (kubeflat_cni is %s)" % cni)
    return kpr


def _api_endpoint(endpoint, distribution, cp_addresses, apiserver_port, lb_port):
    """(host, port) clients reach the API at: the one given, else the first control plane
    (Talos) or the node-local load balancer on 127.0.0.1 (kubeadm)."""
    if endpoint:
        return _split_endpoint(endpoint, apiserver_port)
    if distribution == "talos":
        return (cp_addresses[0] if cp_addresses else "127.0.0.1"), apiserver_port
    # kubeadm: a local load balancer on every node balances to all control planes.
    return "127.0.0.1", lb_port


def _bgp(cfg, cni, host_networks, nodes, outside, hosts):
    """The model's ``bgp`` entry (kubeflat_bgp.build_bgp), refusals as ModelError."""
    settings = {k: cfg.get(k) for k in kubeflat_bgp.DEFAULTS if k in cfg}
    node_names = {n["name"] for n in nodes}
    host_bgp = {}
    for host in hosts or []:
        given = {HOST_BGP_KEYS[k]: host[k] for k in HOST_BGP_KEYS
                 if host.get(k) not in (None, "", [])}
        if not given:
            continue
        if host.get("name") not in node_names:
            key = sorted(given)[0]
            raise ModelError("kubeflat_bgp_%s of %s" % (key, host.get("name")), given[key],
                             "set on a host that is not a cluster node")
        host_bgp[host["name"]] = given
    try:
        return kubeflat_bgp.build_bgp(settings, cni, [str(n) for n in host_networks], nodes,
                                      outside, host_bgp)
    except kubeflat_bgp.BgpError as exc:
        raise ModelError(exc.var, exc.value, exc.reason)


def _cluster_dns(mode, cp_addresses, dns_service_ip):
    """(mode, resolver addresses) every pod and every Envoy uses for cluster names.

    ``control_planes``: the first three control-plane node addresses (name order), where the
    CoreDNS DaemonSet binds; no Service VIP, so no kube-proxy rule, on the DNS path.
    ``service``: the DNS Service VIP, which needs kube-proxy or Cilium's replacement.
    ``auto`` (or unset): ``control_planes`` when the inventory has control planes (``none``
    distributions may list none), else ``service``.
    """
    if mode in (None, "", "auto"):
        mode = "control_planes" if cp_addresses else "service"
    mode = _choice(mode, "kubeflat_dns_mode", DNS_MODES)
    if mode == "service":
        return mode, [dns_service_ip]
    if not cp_addresses:
        raise ModelError("kubeflat_dns_mode", mode,
                         "pods would resolve through the control-plane addresses, but %s is "
                         "empty; add the control planes to the inventory or set "
                         "kubeflat_dns_mode: service" % CONTROL_PLANE_GROUP)
    return mode, cp_addresses[:MAX_DNS_SERVERS]


def node_by_name(model, name):
    """The model's entry for one node, or None."""
    for node in model["nodes"]:
        if node["name"] == name:
            return node
    return None


def peer_routes(model, name):
    """Pod routes a node needs to reach every *other* node's pods (static mode)."""
    return [r for r in model["pod_routes"] if r["node"] != name]


def host_inputs(hostvars_list):
    """Reduce per-host variables to the inputs :func:`build_model` reads.

    ``hostvars_list`` is a list of dicts with ``inventory_hostname``, ``group_names`` and the
    host's variables. The node address is ``kubeflat_node_address`` if set, else
    ``ansible_host``, else the inventory name if it is an address.
    """
    out = []
    for hv in hostvars_list:
        name = hv.get("inventory_hostname")
        address = hv.get("kubeflat_node_address") or hv.get("ansible_host")
        if not address:
            try:
                parse_address(name, "inventory_hostname")
                address = name
            except CidrError:
                address = None
        entry = {
            "name": name,
            "groups": list(hv.get("group_names") or []),
            "address": address,
            "pod_cidr": hv.get("kubeflat_node_pod_cidr") or None,
        }
        for key in HOST_BGP_KEYS:        # only when set: BGP-less inputs stay as they were
            if hv.get("kubeflat_" + key) not in (None, "", []):
                entry[key] = hv["kubeflat_" + key]
        out.append(entry)
    return out
