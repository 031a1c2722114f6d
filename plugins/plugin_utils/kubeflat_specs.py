# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""App catalog -> Kubernetes manifests and Envoy sidecar configs, built as data.

Pure functions: the catalog (``app_specs_apps``, validated by :mod:`kubeflat_catalog`), a few
settings and the cluster model (``kubeflat_model``) in, ``{relative path: file text}`` out:
per app its Deployment(s) (one per memory tier with ``memory_spread``), headless Service, and
the immutable ConfigMap of its Envoy sidecar. Serialisation is deterministic
(:mod:`kubeflat_manifests`), so a re-render of the same inputs is byte-identical. The edge
(ingress DaemonSet, outside balancer, CoreDNS) is :mod:`kubeflat_edge`.
"""

from __future__ import absolute_import, division, print_function

import hashlib

from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_catalog import spec_settings, validate_catalog
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import sidecar_bootstrap
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import (
    CHECKSUM_ANNOTATION, ENVOY_CONFIG_PATH, NAME_LABEL, Dumped, RenderedFiles, content_hash,
    dump_all, dump_yaml, namespace_manifest, object_meta)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_restart import restart_annotations
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import format_memory, parse_memory

__metaclass__ = type

DEPLOYMENT_LABEL = "kubeflat.io/deployment"
TIER_LABEL = "kubeflat.io/memory-tier"


def _http_probe(probe, ports):
    if probe is None:
        return None
    port = probe["port"]
    action = {"httpGet": {"path": probe["path"], "port": port}} if probe["path"] else \
        {"tcpSocket": {"port": port}}
    action.update({"initialDelaySeconds": probe["initial_delay_seconds"],
                   "periodSeconds": probe["period_seconds"],
                   "timeoutSeconds": probe["timeout_seconds"],
                   "failureThreshold": probe["failure_threshold"]})
    return action


def _tiers(app):
    """[(deployment name, tier label or None, replicas, resources)] for an app."""
    spread = app["memory_spread"]
    if not spread:
        return [(app["name"], None, app["replicas"], app["resources"])]
    base = parse_memory(app["resources"]["limits"]["memory"], "memory")
    count = spread["deployments"]
    tiers = []
    for i in range(count):
        # Spread replicas as evenly as possible; earlier tiers take the remainder.
        replicas = app["replicas"] // count + (1 if i < app["replicas"] % count else 0)
        resources = {k: dict(v) for k, v in app["resources"].items()}
        resources["limits"]["memory"] = format_memory(base + i * spread["step"])
        tiers.append(("%s-m%d" % (app["name"], i), str(i), replicas, resources))
    return tiers


def _sidecar_container(app, settings, configmap):
    return {
        "name": "envoy",
        "image": settings["envoy_image"],
        # A native sidecar: started before and stopped after the app container.
        "restartPolicy": "Always",
        "command": ["envoy"],
        "args": ["--config-path", ENVOY_CONFIG_PATH, "--concurrency", "2",
                 "--drain-time-s", str(app["pre_stop_sleep_seconds"] or 1),
                 "--disable-hot-restart", "--log-level", "warn"],
        "resources": settings["envoy_resources"],
        "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy", "readOnly": True}],
        "securityContext": {"runAsUser": settings["envoy_uid"], "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }


def app_bundle(app, settings):
    """Everything rendered for one app: ``{"manifests": [...], "envoy": bootstrap or None,
    "envoy_text": str or None, "envoy_dumped":`` :class:`kubeflat_manifests.Dumped` ``or None}``
    (``envoy_text`` is ``envoy_dumped.text``)."""
    labels = {NAME_LABEL: app["name"]}
    docs = []
    envoy = envoy_text = envoy_dumped = configmap = None
    if app["upstreams"]:
        envoy = sidecar_bootstrap(app["name"], app["upstreams"], app["envoy"])
        envoy_dumped = Dumped(envoy)
        envoy_text = envoy_dumped.text
        configmap = "%s-envoy-%s" % (app["name"], content_hash(envoy_text))
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": object_meta(configmap, app["namespace"], labels),
                     "immutable": True, "data": {"envoy.yaml": envoy_text}})
    checksum = hashlib.sha256((app["config_yaml"] + "\0" + (envoy_text or "")).encode("utf-8"))
    annotations = {CHECKSUM_ANNOTATION: checksum.hexdigest()}
    annotations.update(restart_annotations(settings["restarts"], app["name"]))
    env = [{"name": settings["config_env"], "value": app["config_yaml"]}]
    env += [{"name": u["env"], "value": "http://127.0.0.1:%d" % u["local_port"]}
            for u in app["upstreams"]]
    for dname, tier, replicas, resources in _tiers(app):
        pod_labels = dict(labels, **{DEPLOYMENT_LABEL: dname})
        if tier is not None:
            pod_labels[TIER_LABEL] = tier
        container = {
            "name": "app",
            "image": app["image"],
            "ports": [{"name": p["name"], "containerPort": p["port"], "protocol": "TCP"}
                      for p in app["ports"]],
            "env": env,
            "resources": resources,
            "securityContext": {"allowPrivilegeEscalation": False},
        }
        if app["pre_stop_sleep_seconds"]:
            # Keep serving while callers' DNS refresh drops this pod, then get SIGTERM.
            container["lifecycle"] = {"preStop": {"sleep": {
                "seconds": app["pre_stop_sleep_seconds"]}}}
        for kind, field in (("readiness", "readinessProbe"), ("liveness", "livenessProbe")):
            probe = _http_probe(app["probes"][kind], app["ports"])
            if probe:
                container[field] = probe
        pod_spec = {
            "terminationGracePeriodSeconds": app["termination_grace_period_seconds"],
            "enableServiceLinks": False,
            "containers": [container],
        }
        if configmap:
            pod_spec["initContainers"] = [_sidecar_container(app, settings, configmap)]
            pod_spec["volumes"] = [{"name": "envoy-config",
                                    "configMap": {"name": configmap}}]
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": object_meta(dname, app["namespace"], pod_labels),
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": {NAME_LABEL: app["name"], DEPLOYMENT_LABEL: dname}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": pod_labels, "annotations": annotations},
                             "spec": pod_spec},
            },
        })
    docs.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": object_meta(app["name"], app["namespace"], labels),
        "spec": {
            "clusterIP": "None",
            "selector": {NAME_LABEL: app["name"]},
            "ports": [{"name": p["name"], "port": p["port"], "targetPort": p["port"],
                       "protocol": "TCP"} for p in app["ports"]],
        },
    })
    return {"manifests": docs, "envoy": envoy, "envoy_text": envoy_text,
            "envoy_dumped": envoy_dumped}


def render_apps(apps, settings, model, emit=None):
    """``{relpath: text}`` for the app catalog (manifests under ``specs/<ns>/``, sidecar
    bootstraps under ``envoy/sidecars/<ns>/``). Paths are relative to kubeflat_render_dir.
    A :class:`kubeflat_manifests.RenderedFiles`: its ``dumped`` keeps each sidecar's document;
    ``emit(rel, text)`` (optional) is called as each file is rendered."""
    settings = spec_settings(settings)
    catalog = validate_catalog(apps, settings, model)
    files = RenderedFiles(emit=emit)
    for ns in sorted({a["namespace"] for a in catalog}):
        files["specs/%s/namespace.yaml" % ns] = dump_yaml(namespace_manifest(ns))
    for app in catalog:
        bundle = app_bundle(app, settings)
        files["specs/%s/%s.yaml" % (app["namespace"], app["name"])] = dump_all(bundle["manifests"])
        if bundle["envoy_dumped"]:
            files.add_dumped("envoy/sidecars/%s/%s.yaml" % (app["namespace"], app["name"]),
                             bundle["envoy_dumped"])
    return files


__all__ = ["DEPLOYMENT_LABEL", "TIER_LABEL", "app_bundle", "render_apps"]
