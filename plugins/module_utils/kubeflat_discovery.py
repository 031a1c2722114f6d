# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node pod CIDRs from a running cluster, as route sets for kubeflat.cluster.converge.

Two sources, as the API server returns them (plain JSON dicts):

- ``NodeList``: ``spec.podCIDRs`` (or the older ``spec.podCIDR``) and the node's
  ``InternalIP`` from ``status.addresses``; used by flannel and by Cilium with
  ``ipam.mode: kubernetes``.
- ``CiliumNodeList`` (``cilium.io/v2``): ``spec.ipam.podCIDRs`` and the ``InternalIP`` from
  ``spec.addresses``; used by Cilium's default ``cluster-pool`` IPAM.

:func:`routes_from_api` is pure; :func:`fetch_api_objects` is the only function that talks to
an API server (kubernetes Python client, a kubeconfig) and hands the raw JSON to it unchanged.
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import json

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import (
    CidrError, parse_address, parse_network)

__metaclass__ = type

RESOURCES = ("auto", "node", "ciliumnode")
CILIUM_GROUP, CILIUM_VERSION, CILIUM_PLURAL = "cilium.io", "v2", "ciliumnodes"


class DiscoveryError(ValueError):
    """The cluster's objects cannot give a route set; the message names node and reason."""


def _ipv4_cidrs(values, where):
    out = []
    for value in values or []:
        if ":" in str(value):
            continue  # IPv6 half of a dual-stack node
        try:
            out.append(str(parse_network(value, where)))
        except CidrError as exc:
            raise DiscoveryError(str(exc))
    return out


def _internal_ipv4(addresses, name, where):
    for entry in addresses or []:
        kind = entry.get("type")
        value = entry.get("address") if "address" in entry else entry.get("ip")
        if kind == "InternalIP" and value and ":" not in str(value):
            try:
                return str(parse_address(value, where))
            except CidrError as exc:
                raise DiscoveryError(str(exc))
    raise DiscoveryError("node %s: no IPv4 InternalIP in %s" % (name, where))


def node_entries(node_list):
    """``{name: {"address", "pod_cidrs", "source"}}`` from a NodeList (v1)."""
    out = {}
    for node in (node_list or {}).get("items") or []:
        name = node["metadata"]["name"]
        spec = node.get("spec") or {}
        cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        out[name] = {
            "address": _internal_ipv4((node.get("status") or {}).get("addresses"), name,
                                      "Node %s status.addresses" % name),
            "pod_cidrs": _ipv4_cidrs(cidrs, "Node %s spec.podCIDRs" % name),
            "source": "Node spec.podCIDRs",
        }
    return out


def cilium_node_entries(cilium_node_list):
    """``{name: {"address", "pod_cidrs", "source"}}`` from a CiliumNodeList (cilium.io/v2)."""
    out = {}
    for cnode in (cilium_node_list or {}).get("items") or []:
        name = cnode["metadata"]["name"]
        spec = cnode.get("spec") or {}
        out[name] = {
            "address": _internal_ipv4(spec.get("addresses"), name,
                                      "CiliumNode %s spec.addresses" % name),
            "pod_cidrs": _ipv4_cidrs((spec.get("ipam") or {}).get("podCIDRs"),
                                     "CiliumNode %s spec.ipam.podCIDRs" % name),
            "source": "CiliumNode spec.ipam.podCIDRs",
        }
    return out


def routes_from_api(node_list, cilium_node_list=None, resource="auto"):
    """The route set ``[{"dest", "via", "node", "source"}]`` (sorted by dest).

    ``resource``: ``node`` uses only Node objects, ``ciliumnode`` only CiliumNodes, ``auto``
    takes Node podCIDRs and falls back to the CiliumNode of the same name for nodes without
    any. Refuses a node with no pod CIDR and pod CIDRs shared by two nodes.
    """
    if resource not in RESOURCES:
        raise DiscoveryError("resource=%r: must be one of %s" % (resource, ", ".join(RESOURCES)))
    nodes = node_entries(node_list) if resource in ("auto", "node") else {}
    cnodes = cilium_node_entries(cilium_node_list) if resource in ("auto", "ciliumnode") else {}
    if resource == "ciliumnode":
        chosen = cnodes
    else:
        chosen = {}
        for name, entry in nodes.items():
            if not entry["pod_cidrs"] and resource == "auto" and name in cnodes:
                entry = cnodes[name]
            chosen[name] = entry
    if not chosen:
        raise DiscoveryError("the cluster has no %s objects" % (
            "CiliumNode" if resource == "ciliumnode" else "Node"))
    routes = []
    for name in sorted(chosen):
        entry = chosen[name]
        if not entry["pod_cidrs"]:
            raise DiscoveryError("node %s: no IPv4 pod CIDR (Node spec.podCIDRs%s is empty; is "
                                 "the controller-manager allocating node CIDRs?)"
                                 % (name, " and CiliumNode spec.ipam.podCIDRs"
                                    if resource == "auto" else ""))
        for cidr in entry["pod_cidrs"]:
            routes.append({"dest": cidr, "via": entry["address"], "node": name,
                           "source": entry["source"]})
    routes.sort(key=lambda r: ipaddress.ip_network(r["dest"]))
    for first, second in zip(routes, routes[1:]):
        if ipaddress.ip_network(first["dest"]).overlaps(ipaddress.ip_network(second["dest"])):
            raise DiscoveryError("node %s pod CIDR %s overlaps node %s pod CIDR %s"
                                 % (first["node"], first["dest"], second["node"],
                                    second["dest"]))
    return routes


def fetch_api_objects(kubeconfig, context=None, resource="auto"):
    """Read Nodes (and CiliumNodes) from the cluster of a kubeconfig, as raw API JSON.

    Returns ``(node_list, cilium_node_list)``; ``cilium_node_list`` is None when the
    CiliumNode resource does not exist (no Cilium) or is not asked for.
    """
    from kubernetes import client, config  # imported here: only this path needs it
    from kubernetes.client.rest import ApiException

    api = config.new_client_from_config(config_file=kubeconfig, context=context or None)
    node_list = None
    if resource in ("auto", "node"):
        resp = client.CoreV1Api(api).list_node(_preload_content=False)
        node_list = json.loads(resp.data)
    cilium = None
    if resource in ("auto", "ciliumnode"):
        try:
            resp = client.CustomObjectsApi(api).list_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, CILIUM_PLURAL, _preload_content=False)
            cilium = json.loads(resp.data)
        except ApiException as exc:
            if exc.status != 404 or resource == "ciliumnode":
                raise
    return node_list, cilium
