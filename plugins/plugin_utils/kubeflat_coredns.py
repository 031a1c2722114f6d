# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CoreDNS as kubeflat runs it: a hostNetwork DaemonSet on the control-plane nodes that binds
the node address only (pods and Envoys resolve through those addresses with
``kubeflat_dns_mode: control_planes``), its Corefile, RBAC, and optionally the kube-dns
Service. Settings are ``envoy_ingress_coredns_*``."""

from __future__ import absolute_import, division, print_function

import hashlib

from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import (
    CHECKSUM_ANNOTATION, CONTROL_PLANE_LABEL, MANAGED_BY, content_hash, object_meta)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import (
    SpecError, spec_int, spec_port, spec_resources, with_defaults)

__metaclass__ = type

COREDNS_DEFAULTS = {
    "image": "registry.k8s.io/coredns/coredns:v1.12.1",
    "replace_service": True,
    "health_port": 8080,
    "ready_port": 8181,
    "metrics_port": 9153,
    "cache_seconds": 30,
    "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
}


def coredns_settings(raw=None):
    """Validate ``envoy_ingress_coredns_*`` settings."""
    cfg = with_defaults(raw, COREDNS_DEFAULTS, "envoy_ingress_coredns_")
    ports = {}
    for key in ("health_port", "ready_port", "metrics_port"):
        port = spec_port(cfg[key], "envoy_ingress_coredns_" + key)
        if port == 53 or port in ports:
            raise SpecError("envoy_ingress_coredns_" + key, port,
                            "collides with %s" % ports.get(port, "DNS port 53"))
        ports[port] = key
        cfg[key] = port
    cfg["cache_seconds"] = spec_int(cfg["cache_seconds"], "envoy_ingress_coredns_cache_seconds",
                                    0, 3600)
    if not isinstance(cfg["replace_service"], bool):
        raise SpecError("envoy_ingress_coredns_replace_service", cfg["replace_service"],
                        "must be true or false")
    cfg["resources"] = spec_resources(cfg["resources"], "envoy_ingress_coredns_resources")
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
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": object_meta("coredns", ns, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": object_meta("system:coredns", None, labels),
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": object_meta("system:coredns", None, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": object_meta(configmap, ns, labels),
         "immutable": True, "data": {"Corefile": text}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": object_meta("coredns", ns, labels),
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
                     "metadata": object_meta("kube-dns", ns, dict(labels, **{
                         "kubernetes.io/name": "CoreDNS"})),
                     "spec": {"clusterIP": model["dns_service_ip"], "selector": labels,
                              "ports": [{"name": "dns", "port": 53, "targetPort": 53,
                                         "protocol": "UDP"},
                                        {"name": "dns-tcp", "port": 53, "targetPort": 53,
                                         "protocol": "TCP"}]}})
    cp_addresses = [n["address"] for n in model["nodes"] if n["control_plane"]]
    return {"manifests": docs, "corefile": text, "dns_addresses": cp_addresses}


__all__ = ["COREDNS_DEFAULTS", "coredns_settings", "corefile", "coredns_bundle"]
