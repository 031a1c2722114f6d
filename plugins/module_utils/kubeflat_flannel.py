# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""flannel with the host-gw backend, built as data from the cluster model.

:func:`build_manifest` returns the Kubernetes objects of a flannel install (namespace, RBAC,
ConfigMap with ``net-conf.json`` and ``cni-conf.json``, DaemonSet with the two CNI init
containers) as plain dicts, in apply order. They follow the upstream
``Documentation/kube-flannel.yml`` of flannel v0.28.9 object for object, with these
deliberate differences:

* ``net-conf.json``: ``Network`` is the model's pod CIDR and ``Backend.Type`` is ``host-gw``
  (pods are routed node to node, no VXLAN);
* ``--ip-masq`` is off by default so hosts outside the cluster see pod source addresses
  (they route to pods directly); ``ip_masq: true`` turns it back on;
* ``--iface`` / ``--iface-regex`` choose the interface flannel uses on each node;
* images are pinned and their registry can be replaced for air-gapped sites.

Options (the role's ``cni_flannel_*`` variables without the prefix) are validated by
:func:`validate_options`; an invalid one raises :class:`FlannelError` naming the variable.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_options import (
    check_bool, check_str_list, merge_options, valid_registry)

import copy
import json
import re

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import CidrError, parse_network

__metaclass__ = type

NAMESPACE = "kube-flannel"
CONFIGMAP = "kube-flannel-cfg"
DAEMONSET = "kube-flannel-ds"
CONFLIST_NAME = "10-flannel.conflist"
HEALTHZ_PORT = 8081

DEFAULTS = {
    "image_registry": "ghcr.io",
    "image": "flannel-io/flannel:v0.28.9",
    "cni_plugin_image": "flannel-io/flannel-cni-plugin:v1.9.1-flannel3",
    "ip_masq": False,
    "iface": [],
    "iface_regex": [],
    "enable_nftables": False,
    "cni_bin_dir": "/opt/cni/bin",
}

_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                       r"(@sha256:[0-9a-f]{64})?$")
_IFACE_RE = re.compile(r"^[^\s/]{1,15}$")


class FlannelError(InputError):
    """An invalid flannel option; ``str()`` names the variable, the value and the reason."""


def _var(key):
    return "cni_flannel_%s" % key


def _bool(opts, key):
    return check_bool(opts, key, "cni_flannel_", FlannelError)


def _str_list(opts, key):
    return check_str_list(opts, key, "cni_flannel_", FlannelError)


def validate_options(options):
    """Return the options merged over :data:`DEFAULTS`, or raise :class:`FlannelError`."""
    opts = merge_options(options, DEFAULTS, "cni_flannel_", FlannelError)

    registry = opts["image_registry"]
    if not valid_registry(registry):
        raise FlannelError(_var("image_registry"), registry,
                           "must be a registry host[:port][/path] such as ghcr.io or "
                           "registry.example.net:5000/mirror (no scheme, no trailing /)")
    for key in ("image", "cni_plugin_image"):
        image = opts[key]
        if not isinstance(image, str) or not _IMAGE_RE.match(image) or (
                ":" not in image and "@" not in image):
            raise FlannelError(_var(key), image,
                               "must be a pinned image path with a tag or digest, without the "
                               "registry (e.g. flannel-io/flannel:v0.28.9)")
    _bool(opts, "ip_masq")
    _bool(opts, "enable_nftables")
    opts["iface"] = _str_list(opts, "iface")
    for iface in opts["iface"]:
        if not _IFACE_RE.match(iface):
            raise FlannelError(_var("iface"), iface,
                               "must be an interface name or an IPv4 address (max 15 "
                               "characters, no spaces)")
    opts["iface_regex"] = _str_list(opts, "iface_regex")
    for pattern in opts["iface_regex"]:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise FlannelError(_var("iface_regex"), pattern, "invalid regular expression (%s)"
                               % exc)
    bin_dir = opts["cni_bin_dir"]
    if not isinstance(bin_dir, str) or not bin_dir.startswith("/") or bin_dir.rstrip("/") != \
            bin_dir or "//" in bin_dir:
        raise FlannelError(_var("cni_bin_dir"), bin_dir,
                           "must be an absolute directory path without a trailing /")
    return opts


def image_ref(registry, image):
    """Full image reference: ``registry/image`` (or ``image`` with an empty registry)."""
    return "%s/%s" % (registry, image) if registry else image


def check_one_segment(model):
    """host-gw cannot cross routers: refuse racks (several segments, or BGP) naming the modes
    that can. The cluster model refuses this first; a model built elsewhere meets it here."""
    segments = sorted(model.get("segments") or {})
    if len(segments) > 1 or (model.get("bgp") or {}).get("enabled"):
        raise FlannelError("kubeflat_cni", "flannel", "flannel host-gw only routes between "
                           "nodes on one L2 segment (nodes are on %s); for several racks use "
                           "kubeflat_cni: static or cilium with kubeflat_bgp: true"
                           % (", ".join(segments) or "one segment, with kubeflat_bgp"))


def net_conf(model, options=None):
    """flannel's ``net-conf.json`` as a dict: the cluster pod CIDR, host-gw backend."""
    opts = validate_options(options)
    check_one_segment(model)
    try:
        network = parse_network(model["pod_cidr"], "kubeflat_pod_cidr")
    except CidrError as exc:
        raise FlannelError(exc.var, exc.value, exc.reason)
    return {
        "Network": str(network),
        "EnableNFTables": opts["enable_nftables"],
        "Backend": {"Type": "host-gw"},
    }


def cni_conf():
    """The CNI conflist flannel's init container installs (``10-flannel.conflist``)."""
    return {
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def flanneld_args(options=None):
    """The flanneld command line arguments (list) for the given options."""
    opts = validate_options(options)
    args = []
    if opts["ip_masq"]:
        args.append("--ip-masq")
    args += ["--kube-subnet-mgr", "--healthz-port=%d" % HEALTHZ_PORT]
    args += ["--iface=%s" % iface for iface in opts["iface"]]
    args += ["--iface-regex=%s" % pattern for pattern in opts["iface_regex"]]
    return args


def _json(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def build_manifest(model, options=None):
    """All flannel objects, in apply order, as a list of dicts (see module docstring)."""
    opts = validate_options(options)
    check_one_segment(model)
    labels = {"k8s-app": "flannel"}
    node_labels = {"tier": "node", "app": "flannel"}
    flannel_image = image_ref(opts["image_registry"], opts["image"])
    plugin_image = image_ref(opts["image_registry"], opts["cni_plugin_image"])

    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE,
                     "labels": dict(labels, **{"pod-security.kubernetes.io/enforce":
                                               "privileged"})},
    }
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "flannel", "labels": dict(labels)},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "flannel", "labels": dict(labels)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "flannel"},
        "subjects": [{"kind": "ServiceAccount", "name": "flannel", "namespace": NAMESPACE}],
    }
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "flannel", "namespace": NAMESPACE, "labels": dict(labels)},
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE,
                     "labels": dict(node_labels, **labels)},
        "data": {"cni-conf.json": _json(cni_conf()),
                 "net-conf.json": _json(net_conf(model, opts))},
    }
    container = {
        "name": "kube-flannel",
        "image": flannel_image,
        "command": ["/opt/bin/flanneld"],
        "args": flanneld_args(opts),
        "ports": [{"name": "healthz", "containerPort": HEALTHZ_PORT, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "healthz"},
                          "initialDelaySeconds": 10, "periodSeconds": 30},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "healthz"},
                           "initialDelaySeconds": 5, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "50Mi"}},
        "securityContext": {"privileged": False,
                            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "EVENT_QUEUE_DEPTH", "value": "5000"},
            {"name": "CONT_WHEN_CACHE_NOT_READY", "value": "false"},
        ],
        "volumeMounts": [
            {"name": "run", "mountPath": "/run/flannel"},
            {"name": "flannel-cfg", "mountPath": "/etc/kube-flannel/"},
            {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
        ],
    }
    init_containers = [
        {
            "name": "install-cni-plugin",
            "image": plugin_image,
            "command": ["cp"],
            "args": ["-f", "/flannel", "/opt/cni/bin/flannel"],
            "volumeMounts": [{"name": "cni-plugin", "mountPath": "/opt/cni/bin"}],
        },
        {
            "name": "install-cni",
            "image": flannel_image,
            "command": ["/opt/bin/install-conf"],
            "args": ["/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/%s" % CONFLIST_NAME],
            "volumeMounts": [{"name": "cni", "mountPath": "/etc/cni/net.d"},
                             {"name": "flannel-cfg", "mountPath": "/etc/kube-flannel/"}],
        },
    ]
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": DAEMONSET, "namespace": NAMESPACE,
                     "labels": dict(node_labels, **labels)},
        "spec": {
            "selector": {"matchLabels": {"app": "flannel"}},
            "template": {
                "metadata": {"labels": dict(node_labels)},
                "spec": {
                    "affinity": {"nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "kubernetes.io/os", "operator": "In",
                                 "values": ["linux"]}]}]}}},
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "serviceAccountName": "flannel",
                    "initContainers": init_containers,
                    "containers": [container],
                    "volumes": [
                        {"name": "run", "hostPath": {"path": "/run/flannel"}},
                        {"name": "cni-plugin", "hostPath": {"path": opts["cni_bin_dir"]}},
                        {"name": "cni", "hostPath": {"path": "/etc/cni/net.d"}},
                        {"name": "flannel-cfg", "configMap": {"name": CONFIGMAP}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock",
                                                              "type": "FileOrCreate"}},
                    ],
                },
            },
        },
    }
    return copy.deepcopy([namespace, cluster_role, binding, service_account, config_map,
                          daemonset])


def manifest_net_conf(objects):
    """The parsed ``net-conf.json`` of the flannel ConfigMap in ``objects`` (None if absent)."""
    for obj in objects or []:
        if obj.get("kind") == "ConfigMap" and (obj.get("metadata") or {}).get("name") == \
                CONFIGMAP:
            text = (obj.get("data") or {}).get("net-conf.json")
            if text is None:
                return None
            return json.loads(text)
    return None
