# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cilium with native routing, built as data from the cluster model.

* :func:`build_values` returns the Helm chart values (a dict) for the Cilium chart
  (pinned 1.19.2): ``routingMode: native``, ``ipv4NativeRoutingCIDR`` = pod CIDR,
  ``autoDirectNodeRoutes: true``, kube-proxy replacement and ``k8sServiceHost``/``Port``
  from the model, IPAM ``kubernetes`` (default) or ``cluster-pool``, masquerade settings that
  keep pod source addresses towards the host networks, optional Hubble, L2 announcements.
* :func:`build_lb_ipam_objects` returns the ``CiliumLoadBalancerIPPool`` and
  ``CiliumL2AnnouncementPolicy`` objects for the LB IPAM pools.
* :func:`validate_lb_pools` refuses pools that overlap a node, outside host, pod or service
  address.
* :func:`install_argv` is the exact ``helm upgrade --install`` command.
* With ``kubeflat_bgp`` the values also turn the BGP Control Plane on and set
  ``directRoutingSkipUnreachable`` (kubeflat_bgp.cilium_bgp_values); the BGP objects come from
  kubeflat_bgp.cilium_bgp_objects (role bgp_cilium).

Options are the role's ``cni_cilium_*`` variables without the prefix; invalid ones raise
:class:`CiliumError` naming the variable.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_options import (
    check_bool, check_str_list, merge_options, valid_registry)

import copy
import ipaddress
import re

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import (
    CidrError, parse_address, parse_network)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_bgp import cilium_bgp_values

__metaclass__ = type

IPAM_MODES = ("kubernetes", "cluster-pool")
DEFAULTS = {
    "version": "1.19.2",
    "chart_ref": "cilium/cilium",
    "chart_repo_url": "https://helm.cilium.io/",
    "release_name": "cilium",
    "namespace": "kube-system",
    "ipam_mode": "kubernetes",
    "masquerade": False,
    "hubble": False,
    "hubble_relay": False,
    "hubble_ui": False,
    "lb_ipam_pools": [],
    "l2_announcements": False,
    "l2_interfaces": [],
    "devices": [],
    "image_registry": "",
    "extra_values": {},
}
# Chart image values whose repository is replaced by image_registry (upstream: quay.io/...).
IMAGE_PATHS = {
    ("image",): "cilium/cilium",
    ("operator", "image"): "cilium/operator",
    ("envoy", "image"): "cilium/cilium-envoy",
    ("hubble", "relay", "image"): "cilium/hubble-relay",
    ("hubble", "ui", "frontend", "image"): "cilium/hubble-ui",
    ("hubble", "ui", "backend", "image"): "cilium/hubble-ui-backend",
}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class CiliumError(InputError):
    """An invalid Cilium option; ``str()`` names the variable, the value and the reason."""


def _var(key):
    return "cni_cilium_%s" % key


def _bool(opts, key):
    return check_bool(opts, key, "cni_cilium_", CiliumError)


def _str_list(opts, key):
    return check_str_list(opts, key, "cni_cilium_", CiliumError)


def _net(value, var):
    try:
        return parse_network(value, var)
    except CidrError as exc:
        raise CiliumError(exc.var, exc.value, exc.reason)


def _block_range(block, var):
    """(first, last) ipaddress pair of one pool block: ``cidr`` or ``start``[/``stop``]."""
    if not isinstance(block, dict) or not (set(block) <= {"cidr", "start", "stop"}) or (
            "cidr" in block) == ("start" in block):
        raise CiliumError(var, block, "a block is {cidr: a.b.c.d/n} or {start: ip, stop: ip}")
    if "cidr" in block:
        net = _net(block["cidr"], var)
        return net.network_address, net.broadcast_address, net
    try:
        first = parse_address(block["start"], var)
        last = parse_address(block.get("stop", block["start"]), var)
    except CidrError as exc:
        raise CiliumError(exc.var, exc.value, exc.reason)
    if last < first:
        raise CiliumError(var, block, "stop is before start")
    return first, last, None


def _ranges_overlap(a_first, a_last, b_first, b_last):
    return a_first <= b_last and b_first <= a_last


def validate_lb_pools(model, pools, l2_announcements=False):
    """Validate LB IPAM pools against the model; return them normalised.

    A pool is ``{"name": str, "blocks": [{"cidr": ...} | {"start": ..., "stop": ...}]}``.
    Refused: overlap with the pod or service CIDR, a block containing a node or outside host
    address, blocks overlapping each other, duplicate names; with L2 announcements also a
    block outside every host network (ARP would never reach it).
    """
    if pools is None:
        return []
    if not isinstance(pools, (list, tuple)):
        raise CiliumError(_var("lb_ipam_pools"), pools, "must be a list of pools")
    pod = _net(model["pod_cidr"], "kubeflat_pod_cidr")
    service = _net(model["service_cidr"], "kubeflat_service_cidr")
    hosts = [(n["name"], ipaddress.ip_address(n["address"]))
             for n in list(model["nodes"]) + list(model.get("outside_hosts") or [])]
    host_networks = [_net(n, "kubeflat_host_networks") for n in model["host_networks"]]
    seen_names = set()
    seen_blocks = []
    out = []
    for i, pool in enumerate(pools):
        var = "%s[%d]" % (_var("lb_ipam_pools"), i)
        if not isinstance(pool, dict) or set(pool) - {"name", "blocks"}:
            raise CiliumError(var, pool, "a pool is {name: ..., blocks: [...]}")
        name = pool.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise CiliumError(var + ".name", name, "must be a DNS subdomain name")
        if name in seen_names:
            raise CiliumError(var + ".name", name, "pool name used twice")
        seen_names.add(name)
        blocks = pool.get("blocks")
        if not isinstance(blocks, (list, tuple)) or not blocks:
            raise CiliumError(var + ".blocks", blocks, "must be a non-empty list of blocks")
        norm_blocks = []
        for j, block in enumerate(blocks):
            bvar = "%s.blocks[%d]" % (var, j)
            first, last, net = _block_range(block, bvar)
            for label, cluster_net in (("kubeflat_pod_cidr", pod),
                                       ("kubeflat_service_cidr", service)):
                if _ranges_overlap(first, last, cluster_net.network_address,
                                   cluster_net.broadcast_address):
                    raise CiliumError(bvar, block, "overlaps %s %s" % (label, cluster_net))
            for hname, address in hosts:
                if first <= address <= last:
                    raise CiliumError(bvar, block, "contains the address %s of host %s"
                                      % (address, hname))
            for other_var, o_first, o_last in seen_blocks:
                if _ranges_overlap(first, last, o_first, o_last):
                    raise CiliumError(bvar, block, "overlaps %s" % other_var)
            if l2_announcements:
                inside = [h for h in host_networks
                          if first in h and last in h]
                if not inside:
                    raise CiliumError(bvar, block, "L2 announcements answer ARP on the nodes' "
                                      "segment, but this block is not inside any of "
                                      "kubeflat_host_networks %s"
                                      % ", ".join(str(h) for h in host_networks))
                for h in inside:
                    for edge, what in ((h.network_address, "network"),
                                       (h.broadcast_address, "broadcast")):
                        if first <= edge <= last:
                            raise CiliumError(bvar, block, "contains the %s address %s of "
                                              "host network %s" % (what, edge, h))
            seen_blocks.append((bvar, first, last))
            if net is not None:
                norm_blocks.append({"cidr": str(net)})
            else:
                norm_blocks.append({"start": str(first), "stop": str(last)})
        out.append({"name": name, "blocks": norm_blocks})
    return out


def validate_options(model, options):
    """Return the options merged over :data:`DEFAULTS`, or raise :class:`CiliumError`."""
    opts = merge_options(options, DEFAULTS, "cni_cilium_", CiliumError)
    for key in ("masquerade", "hubble", "hubble_relay", "hubble_ui", "l2_announcements"):
        _bool(opts, key)
    if opts["ipam_mode"] not in IPAM_MODES:
        raise CiliumError(_var("ipam_mode"), opts["ipam_mode"],
                          "must be one of %s" % ", ".join(IPAM_MODES))
    version = opts["version"]
    if not isinstance(version, str) or not re.match(r"^\d+\.\d+\.\d+$", version):
        raise CiliumError(_var("version"), opts["version"],
                          "must be a pinned chart version like 1.19.2")
    for key in ("chart_ref", "release_name", "namespace"):
        if not isinstance(opts[key], str) or not opts[key].strip() or " " in opts[key]:
            raise CiliumError(_var(key), opts[key], "must be a non-empty string without spaces")
    if not isinstance(opts["chart_repo_url"], str):
        raise CiliumError(_var("chart_repo_url"), opts["chart_repo_url"], "must be a string")
    registry = opts["image_registry"]
    if not valid_registry(registry):
        raise CiliumError(_var("image_registry"), registry,
                          "must be empty (upstream quay.io) or a registry host[:port][/path]")
    opts["l2_interfaces"] = _str_list(opts, "l2_interfaces")
    for pattern in opts["l2_interfaces"]:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise CiliumError(_var("l2_interfaces"), pattern, "invalid regular expression (%s)"
                              % exc)
    opts["devices"] = _str_list(opts, "devices")
    if not isinstance(opts["extra_values"], dict):
        raise CiliumError(_var("extra_values"), opts["extra_values"], "must be a dict")
    if (opts["hubble_relay"] or opts["hubble_ui"]) and not opts["hubble"]:
        raise CiliumError(_var("hubble"), opts["hubble"],
                          "Hubble relay/UI need cni_cilium_hubble: true")
    if opts["hubble_ui"] and not opts["hubble_relay"]:
        raise CiliumError(_var("hubble_relay"), opts["hubble_relay"],
                          "the Hubble UI needs the relay (cni_cilium_hubble_relay: true)")
    kpr = bool(model.get("kube_proxy_replacement"))
    if opts["masquerade"] and not kpr:
        raise CiliumError(_var("masquerade"), True,
                          "masquerading that keeps pod addresses towards the host networks "
                          "uses eBPF masquerade with ip-masq-agent, which needs kube-proxy "
                          "replacement (kubeflat_kube_proxy_replacement: true)")
    if opts["l2_announcements"] and not kpr:
        raise CiliumError(_var("l2_announcements"), True,
                          "L2 announcements need kube-proxy replacement "
                          "(kubeflat_kube_proxy_replacement: true)")
    if opts["l2_announcements"] and not opts["lb_ipam_pools"]:
        raise CiliumError(_var("l2_announcements"), True,
                          "nothing to announce: cni_cilium_lb_ipam_pools is empty")
    opts["lb_ipam_pools"] = validate_lb_pools(model, opts["lb_ipam_pools"],
                                              opts["l2_announcements"])
    return opts


def _set_path(tree, path, value):
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def deep_merge(base, extra):
    """Recursive merge of dict ``extra`` over ``base`` (new dict; lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_values(model, options=None):
    """Helm values for the Cilium chart (see module docstring)."""
    opts = validate_options(model, options)
    kpr = bool(model.get("kube_proxy_replacement"))
    api = model["apiserver"]
    values = {
        "cluster": {"name": model["cluster_name"]},
        "routingMode": "native",
        "ipv4NativeRoutingCIDR": model["pod_cidr"],
        "autoDirectNodeRoutes": True,
        "ipv4": {"enabled": True},
        "ipv6": {"enabled": False},
        "kubeProxyReplacement": kpr,
        "k8sServiceHost": api["endpoint_host"],
        "k8sServicePort": int(api["endpoint_port"]),
        "ipam": {"mode": opts["ipam_mode"]},
        "hubble": {"enabled": opts["hubble"],
                   "relay": {"enabled": opts["hubble_relay"]},
                   "ui": {"enabled": opts["hubble_ui"]}},
        "operator": {"replicas": 1 if len(model["nodes"]) < 2 else 2},
    }
    if opts["ipam_mode"] == "cluster-pool":
        values["ipam"]["operator"] = {
            "clusterPoolIPv4PodCIDRList": [model["pod_cidr"]],
            "clusterPoolIPv4MaskSize": int(model["node_pod_prefix"]),
        }
    if opts["masquerade"]:
        # Masquerade only traffic leaving for the world: pod -> host networks keeps the pod
        # address, so outside hosts see (and route back to) pods directly.
        values["enableIPv4Masquerade"] = True
        values["bpf"] = {"masquerade": True}
        values["ipMasqAgent"] = {
            "enabled": True,
            "config": {"nonMasqueradeCIDRs": [model["pod_cidr"]] + list(model["host_networks"]),
                       "masqLinkLocal": False},
        }
    else:
        values["enableIPv4Masquerade"] = False
    if opts["devices"]:
        # values.yaml documents it as a (commented) string: space-separated device names.
        values["devices"] = " ".join(opts["devices"])
    if opts["l2_announcements"]:
        values["l2announcements"] = {"enabled": True}
        # L2 announcements hold one lease per service: raise the API client rate limits.
        values["k8sClientRateLimit"] = {"qps": 20, "burst": 40}
    if model.get("distribution") == "talos":
        # Talos: cgroup v2 is mounted by the OS, and SYS_MODULE is not granted to pods.
        values["cgroup"] = {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}
        values["securityContext"] = {"capabilities": {
            "ciliumAgent": ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_ADMIN",
                            "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
            "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]}}
    # Racks (kubeflat_bgp): BGP Control Plane on; direct routes only within a segment.
    values.update(cilium_bgp_values(model))
    if opts["image_registry"]:
        for path, repo in IMAGE_PATHS.items():
            _set_path(values, path + ("repository",), "%s/%s" % (opts["image_registry"], repo))
            # Mirrors rarely keep upstream digests; the chart version pins the tags.
            _set_path(values, path + ("useDigest",), False)
    return deep_merge(values, opts["extra_values"])


def build_lb_ipam_objects(model, options=None):
    """CiliumLoadBalancerIPPool (+ CiliumL2AnnouncementPolicy) objects, in apply order."""
    opts = validate_options(model, options)
    objects = []
    for pool in opts["lb_ipam_pools"]:
        objects.append({
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": pool["name"]},
            "spec": {"blocks": copy.deepcopy(pool["blocks"])},
        })
    if opts["l2_announcements"] and objects:
        spec = {"loadBalancerIPs": True, "externalIPs": True}
        if opts["l2_interfaces"]:
            spec["interfaces"] = list(opts["l2_interfaces"])
        objects.append({
            "apiVersion": "cilium.io/v2alpha1",
            "kind": "CiliumL2AnnouncementPolicy",
            "metadata": {"name": "kubeflat-%s" % model["cluster_name"]},
            "spec": spec,
        })
    return objects


def install_argv(options, values_path, helm="helm", kubeconfig=None):
    """The exact ``helm upgrade --install`` argument list for these options."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    argv = [helm, "upgrade", "--install", opts["release_name"], opts["chart_ref"],
            "--version", opts["version"], "--namespace", opts["namespace"],
            "--values", values_path]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    return argv


def repo_add_argv(options, helm="helm"):
    """``helm repo add`` for the chart repository (None when chart_ref is a path or OCI)."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    ref = opts["chart_ref"]
    if not opts["chart_repo_url"] or "/" not in ref or ref.startswith(("/", ".", "oci://")):
        return None
    return [helm, "repo", "add", ref.split("/", 1)[0], opts["chart_repo_url"]]
