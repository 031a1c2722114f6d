# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge, built as data: the Envoy ingress DaemonSet on the nodes' own addresses (routes
from the catalog's ``ingress`` entries), the outside balancer's Envoy config pointing at those
nodes, and CoreDNS (:mod:`kubeflat_coredns`). Settings are ``envoy_ingress_*``."""

from __future__ import absolute_import, division, print_function

import hashlib

from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_catalog import spec_settings, validate_catalog
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_coredns import coredns_bundle, coredns_settings
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import (
    cluster_resolvers, envoy_options, headless_name, ingress_bootstrap,
    ingress_drain_seconds, ingress_pre_stop, outside_balancer_bootstrap)
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import (
    CHECKSUM_ANNOTATION, CONTROL_PLANE_LABEL, ENVOY_CONFIG_PATH, MANAGED_BY, NAME_LABEL,
    Dumped, RenderedFiles, content_hash, dump_all, namespace_manifest, object_meta)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import (
    SpecError, spec_label, spec_port, spec_resources, with_defaults)

__metaclass__ = type

INGRESS_DEFAULTS = {
    "namespace": "kubeflat-ingress",
    "listeners": [{"name": "http", "port": 80}],
    "on_control_planes": True,
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
}


def ingress_settings(raw=None):
    """Validate ``envoy_ingress_*`` settings."""
    cfg = with_defaults(raw, INGRESS_DEFAULTS, "envoy_ingress_")
    spec_label(cfg["namespace"], "envoy_ingress_namespace")
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
        spec_label(entry["name"], var + ".name", 15)
        port = spec_port(entry["port"], var + ".port")
        if entry["name"] in seen or port in seen:
            raise SpecError(var, entry, "duplicate listener name or port")
        seen.update((entry["name"], port))
        out.append({"name": entry["name"], "port": port})
    cfg["listeners"] = out
    if not isinstance(cfg["on_control_planes"], bool):
        raise SpecError("envoy_ingress_on_control_planes", cfg["on_control_planes"],
                        "must be true or false")
    cfg["resources"] = spec_resources(cfg["resources"], "envoy_ingress_resources")
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
    """Ingress DaemonSet manifests, its Envoy bootstrap and the outside balancer config (each
    config's text and, as ``*_dumped``, its :class:`kubeflat_manifests.Dumped`)."""
    opts = envoy_options(settings["envoy"], "app_specs_envoy")
    routes = ingress_routes(catalog, ingress["listeners"], model["cluster_domain"])
    envoy = ingress_bootstrap(ingress["listeners"], routes, opts, cluster_resolvers(model))
    envoy_dumped = Dumped(envoy)
    envoy_text = envoy_dumped.text
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
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": object_meta(configmap, ns, labels),
         "immutable": True, "data": {"envoy.yaml": envoy_text}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": object_meta("envoy-ingress", ns,
                                                                               labels),
         "spec": {
             "selector": {"matchLabels": labels},
             "updateStrategy": {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 1}},
             "template": {
                 "metadata": {"labels": dict(MANAGED_BY, **labels), "annotations": {
                     CHECKSUM_ANNOTATION: hashlib.sha256(envoy_text.encode()).hexdigest()}},
                 "spec": pod_spec}}},
    ]
    outside_dumped = Dumped(outside)
    return {"manifests": docs, "envoy": envoy, "envoy_text": envoy_text,
            "envoy_dumped": envoy_dumped, "outside": outside, "outside_text": outside_dumped.text,
            "outside_dumped": outside_dumped, "nodes": [n["address"] for n in nodes]}


def render_edge(apps, settings, ingress, coredns, model):
    """``{relpath: text}`` for the ingress DaemonSet, the outside balancer and CoreDNS.

    ``coredns`` None leaves CoreDNS out, refused when pods resolve through the control planes
    (``kubeflat_dns_mode: control_planes``): nothing would answer on those addresses.
    A :class:`kubeflat_manifests.RenderedFiles`: its ``dumped`` keeps each Envoy config's document.
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
    files = RenderedFiles({"specs/%s/envoy-ingress.yaml" % ns: dump_all(bundle["manifests"])})
    files.add_dumped("envoy/ingress.yaml", bundle["envoy_dumped"])
    files.add_dumped("envoy/outside-balancer.yaml", bundle["outside_dumped"])
    if coredns is not None:
        dns = coredns_bundle(model, coredns_settings(coredns))
        files["specs/kube-system/coredns.yaml"] = dump_all(dns["manifests"])
    return files


__all__ = ["INGRESS_DEFAULTS", "ingress_settings", "ingress_routes", "ingress_bundle",
           "render_edge"]
