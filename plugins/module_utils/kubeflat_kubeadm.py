# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kubeadm configuration and the node-local API server load balancer, built as data.

Everything here is a pure function of the cluster model (``kubeflat_model``, see
kubeflat_model.py) and a few kubeadm settings; nothing recomputes CIDRs.

* :func:`node_documents` -- the kubeadm documents one node is installed with: the first control
  plane gets InitConfiguration + ClusterConfiguration + KubeletConfiguration (+
  KubeProxyConfiguration unless Cilium replaces kube-proxy), every other node a
  JoinConfiguration (control plane or worker). API ``kubeadm.k8s.io/v1beta4``.
* :func:`kubelet_reserved` -- systemReserved/kubeReserved/evictionHard from per-host variables,
  applied per node through a kubeadm ``kubeletconfiguration`` patch (:func:`kubelet_patch`).
* :func:`apiserver_lb_envoy_config` / :func:`apiserver_lb_pod` -- an Envoy TCP proxy static pod on
  every node listening on 127.0.0.1:<lb_port>, balancing to every control plane (the kubelet and
  kube-proxy of every node talk to the API through it).
* secrets: :func:`generate_token`, :func:`generate_certificate_key`, :func:`generate_ca`,
  :func:`ca_cert_hash` -- generated once on the controller, so every join configuration can pin
  the CA before the cluster exists.
* :func:`kubeadm_commands` -- the exact kubeadm command lines (argument lists) a node runs.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

import hashlib
import re
import secrets

__metaclass__ = type

API_KUBEADM = "kubeadm.k8s.io/v1beta4"
API_KUBELET = "kubelet.config.k8s.io/v1beta1"
API_KUBE_PROXY = "kubeproxy.config.k8s.io/v1alpha1"

DEFAULT_SETTINGS = {
    "kubernetes_version": "v1.37.0",
    "image_repository": "registry.k8s.io",
    "cri_socket": "unix:///run/containerd/containerd.sock",
    "config_dir": "/etc/kubernetes/kubeflat",
    "cert_sans": [],
    "kube_proxy_mode": "nftables",
    "allocate_node_cidrs": False,
    "token_ttl": "2h0m0s",
    "lb_image": "docker.io/envoyproxy/envoy:v1.36.2",
    "lb_admin_port": 7444,
    "ignore_preflight_errors": [],
}
KUBE_PROXY_MODES = ("iptables", "ipvs", "nftables")
RESERVED_KEYS = ("cpu", "memory", "ephemeral-storage", "pid")
EVICTION_SIGNALS = ("memory.available", "nodefs.available", "nodefs.inodesFree",
                    "imagefs.available", "imagefs.inodesFree", "containerfs.available",
                    "containerfs.inodesFree", "pid.available")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$")
_PERCENT = re.compile(r"^[0-9]+(\.[0-9]+)?%$")
_TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_CERT_KEY = re.compile(r"^[0-9a-f]{64}$")
_CA_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+s)?$")
# The directory the node-local load balancer's config lives in on every node.
LB_CONFIG_DIR = "/etc/kubernetes/kubeflat/apiserver-lb"
LB_NAME = "kubeflat-apiserver-lb"


class KubeadmError(InputError):
    """Invalid kubeadm input. ``str()`` names the variable, the value and the reason."""


# --- validation ------------------------------------------------------------------------------

def normalize_version(value, var="kubeadm_kubernetes_version"):
    """``1.37.0`` or ``v1.37.0`` -> ``v1.37.0``; anything else is refused."""
    match = _VERSION.match(str(value or "").strip())
    if not match:
        raise KubeadmError(var, value, "must be a full Kubernetes version like v1.37.0")
    return "v%s.%s.%s" % match.groups()


def validate_token(value, var="kubeadm_bootstrap_token"):
    """A bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}``. The value is never echoed back."""
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise KubeadmError(var, "<hidden>", "must match [a-z0-9]{6}.[a-z0-9]{16}")
    return value


def validate_certificate_key(value, var="kubeadm_certificate_key"):
    """The control-plane certificate key: 32 bytes as 64 lower-case hex digits."""
    if not isinstance(value, str) or not _CERT_KEY.match(value):
        raise KubeadmError(var, "<hidden>", "must be 64 lower-case hex digits (32 bytes)")
    return value


def validate_ca_cert_hash(value, var="kubeadm_ca_cert_hash"):
    if not isinstance(value, str) or not _CA_HASH.match(value):
        raise KubeadmError(var, value, "must look like sha256:<64 hex digits>")
    return value


def _quantity_map(values, var, allowed, allow_percent):
    if values in (None, ""):
        return {}
    if not isinstance(values, dict):
        raise KubeadmError(var, values, "must be a mapping like {cpu: 500m, memory: 1Gi}")
    out = {}
    for key in sorted(values):
        if key not in allowed:
            raise KubeadmError(var, key, "unknown key; allowed: %s" % ", ".join(allowed))
        text = str(values[key]).strip()
        if not (_QUANTITY.match(text) or (allow_percent and _PERCENT.match(text))):
            raise KubeadmError("%s.%s" % (var, key), values[key],
                               "must be a Kubernetes quantity (e.g. 500m, 2Gi)%s"
                               % (" or a percentage" if allow_percent else ""))
        out[key] = text
    return out


def kubelet_reserved(system_reserved=None, kube_reserved=None, eviction_hard=None,
                     prefix="kubeadm_kubelet"):
    """KubeletConfiguration fields reserving resources for the system (e.g. Kafka beside the
    kubelet) and for Kubernetes daemons, plus hard eviction thresholds.

    Returns only the fields that were given, with validated string values.
    """
    out = {}
    system = _quantity_map(system_reserved, prefix + "_system_reserved", RESERVED_KEYS, False)
    kube = _quantity_map(kube_reserved, prefix + "_kube_reserved", RESERVED_KEYS, False)
    eviction = _quantity_map(eviction_hard, prefix + "_eviction_hard", EVICTION_SIGNALS, True)
    if system:
        out["systemReserved"] = system
    if kube:
        out["kubeReserved"] = kube
    if eviction:
        out["evictionHard"] = eviction
    return out


def merge_settings(settings):
    """Defaults + given settings, validated. Unknown keys are refused."""
    cfg = dict(DEFAULT_SETTINGS)
    for key, value in (settings or {}).items():
        if key not in DEFAULT_SETTINGS:
            raise KubeadmError("kubeadm_" + key, value, "unknown kubeadm setting")
        if value is not None:
            cfg[key] = value
    cfg["kubernetes_version"] = normalize_version(cfg["kubernetes_version"])
    if cfg["kube_proxy_mode"] not in KUBE_PROXY_MODES:
        raise KubeadmError("kubeadm_kube_proxy_mode", cfg["kube_proxy_mode"],
                           "must be one of %s" % ", ".join(KUBE_PROXY_MODES))
    if not _DURATION.match(str(cfg["token_ttl"])) or not str(cfg["token_ttl"]):
        raise KubeadmError("kubeadm_token_ttl", cfg["token_ttl"], "must be a duration like 2h0m0s")
    if not isinstance(cfg["cert_sans"], list):
        raise KubeadmError("kubeadm_cert_sans", cfg["cert_sans"], "must be a list")
    if not str(cfg["config_dir"]).startswith("/"):
        raise KubeadmError("kubeadm_config_dir", cfg["config_dir"], "must be an absolute path")
    return cfg


# --- the model, seen from kubeadm ------------------------------------------------------------

def first_control_plane(model):
    """The control plane that runs ``kubeadm init`` (the first by name)."""
    if not model.get("control_planes"):
        raise KubeadmError("kube_control_plane", [], "kubeadm needs at least one control plane")
    return model["control_planes"][0]


def _node(model, name):
    for node in model["nodes"]:
        if node["name"] == name:
            return node
    raise KubeadmError("inventory_hostname", name, "is not a cluster node in kubeflat_model")


def node_role(model, name):
    """``init`` (first control plane), ``control-plane`` (joins as one) or ``worker``."""
    node = _node(model, name)
    if name == first_control_plane(model):
        return "init"
    return "control-plane" if node["control_plane"] else "worker"


def lb_enabled(model):
    """The node-local load balancer is used when the API endpoint is it (127.0.0.1:<lb_port>)."""
    api = model["apiserver"]
    return api["endpoint_host"] in ("127.0.0.1", "localhost") and \
        int(api["endpoint_port"]) == int(api["lb_port"])


def discovery_endpoint(model):
    """Where joining nodes fetch cluster-info: the first control plane's API server directly,
    because the node-local load balancer only starts with the kubelet, after discovery."""
    first = _node(model, first_control_plane(model))
    return "%s:%d" % (first["address"], model["apiserver"]["port"])


def _ignore_preflight(model, cfg):
    errors = list(cfg["ignore_preflight_errors"])
    if lb_enabled(model) and "DirAvailable--etc-kubernetes-manifests" not in errors:
        # The load balancer's static pod is in the manifests directory before init/join.
        errors.append("DirAvailable--etc-kubernetes-manifests")
    return sorted(errors)


def _node_registration(model, node, cfg):
    reg = {
        "name": node["name"],
        "criSocket": cfg["cri_socket"],
        "kubeletExtraArgs": [{"name": "node-ip", "value": node["address"]}],
    }
    errors = _ignore_preflight(model, cfg)
    if errors:
        reg["ignorePreflightErrors"] = errors
    return reg


def _patches(cfg):
    return {"directory": cfg["config_dir"] + "/patches"}


def cluster_configuration(model, settings=None):
    """ClusterConfiguration: endpoint, pod/service subnets and DNS domain from the model."""
    cfg = merge_settings(settings)
    api = model["apiserver"]
    sans = ["127.0.0.1", "localhost"] + [_node(model, n)["address"]
                                         for n in model["control_planes"]]
    sans += [str(s) for s in cfg["cert_sans"]]
    if api["endpoint_host"] not in sans:
        sans.append(api["endpoint_host"])
    doc = {
        "apiVersion": API_KUBEADM,
        "kind": "ClusterConfiguration",
        "clusterName": model["cluster_name"],
        "kubernetesVersion": cfg["kubernetes_version"],
        "imageRepository": cfg["image_repository"],
        "controlPlaneEndpoint": api["endpoint"],
        "networking": {
            "podSubnet": model["pod_cidr"],
            "serviceSubnet": model["service_cidr"],
            "dnsDomain": model["cluster_domain"],
        },
        "apiServer": {"certSANs": sorted(set(sans))},
        "controllerManager": {"extraArgs": [
            # kubeflat assigns every node's pod CIDR in the model; the controller-manager must
            # not allocate different ones (the network stage sets spec.podCIDR from the model).
            {"name": "allocate-node-cidrs", "value": "true" if cfg["allocate_node_cidrs"] else "false"},
        ]},
        "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
    }
    if cfg["allocate_node_cidrs"]:
        doc["controllerManager"]["extraArgs"].append(
            {"name": "node-cidr-mask-size-ipv4", "value": str(model["node_pod_prefix"])})
    return doc


def kubelet_configuration(model, settings=None):
    """Cluster-wide KubeletConfiguration (per-node reservations come as patches)."""
    merge_settings(settings)
    return {
        "apiVersion": API_KUBELET,
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        # Pods resolve through the model's cluster DNS: the control-plane node addresses
        # (CoreDNS DaemonSet, hostNetwork) by default, or the DNS Service VIP.
        "clusterDNS": cluster_dns(model),
        "clusterDomain": model["cluster_domain"],
        "failSwapOn": True,
        "rotateCertificates": True,
        "serverTLSBootstrap": False,
        "staticPodPath": "/etc/kubernetes/manifests",
    }


def cluster_dns(model):
    """The kubelet's clusterDNS list (models without ``cluster_dns`` use the DNS VIP)."""
    return list(model.get("cluster_dns") or [model["dns_service_ip"]])


def skip_phases(model):
    """kubeadm init phases kubeflat replaces: kube-proxy (Cilium KPR) and, when pods resolve
    through the control-plane addresses, the CoreDNS Deployment (kubeflat's CoreDNS DaemonSet,
    rendered by the envoy stage, binds those addresses instead)."""
    skip = []
    if model.get("kube_proxy_replacement"):
        skip.append("addon/kube-proxy")
    if model.get("dns_mode", "service") == "control_planes":
        skip.append("addon/coredns")
    return skip


def kube_proxy_configuration(model, settings=None):
    cfg = merge_settings(settings)
    return {
        "apiVersion": API_KUBE_PROXY,
        "kind": "KubeProxyConfiguration",
        "mode": cfg["kube_proxy_mode"],
        "clusterCIDR": model["pod_cidr"],
    }


def init_configuration(model, token, certificate_key, settings=None):
    """InitConfiguration for the first control plane (bootstrap token + certificate key)."""
    cfg = merge_settings(settings)
    node = _node(model, first_control_plane(model))
    doc = {
        "apiVersion": API_KUBEADM,
        "kind": "InitConfiguration",
        "bootstrapTokens": [{
            "token": validate_token(token),
            "ttl": cfg["token_ttl"],
            "usages": ["signing", "authentication"],
            "groups": ["system:bootstrappers:kubeadm:default-node-token"],
            "description": "kubeflat join token",
        }],
        "certificateKey": validate_certificate_key(certificate_key),
        "localAPIEndpoint": {"advertiseAddress": node["address"],
                             "bindPort": model["apiserver"]["port"]},
        "nodeRegistration": _node_registration(model, node, cfg),
        "patches": _patches(cfg),
    }
    skip = skip_phases(model)
    if skip:
        doc["skipPhases"] = skip
    return doc


def join_configuration(model, name, token, ca_cert_hashes, certificate_key=None, settings=None):
    """JoinConfiguration for a control plane (with certificate key) or a worker."""
    cfg = merge_settings(settings)
    node = _node(model, name)
    role = node_role(model, name)
    if role == "init":
        raise KubeadmError("inventory_hostname", name,
                           "is the first control plane: it runs kubeadm init, not join")
    hashes = [validate_ca_cert_hash(h) for h in (ca_cert_hashes or [])]
    if not hashes:
        raise KubeadmError("kubeadm_ca_cert_hash", ca_cert_hashes,
                           "join needs the CA public key hash (never skip CA verification)")
    doc = {
        "apiVersion": API_KUBEADM,
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": discovery_endpoint(model),
            "token": validate_token(token),
            "caCertHashes": hashes,
        }},
        "nodeRegistration": _node_registration(model, node, cfg),
        "patches": _patches(cfg),
    }
    if role == "control-plane":
        doc["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": node["address"],
                                 "bindPort": model["apiserver"]["port"]},
            "certificateKey": validate_certificate_key(certificate_key),
        }
    return doc


def node_documents(model, name, token, certificate_key, ca_cert_hash, settings=None):
    """All kubeadm documents for one node, in the order kubeadm reads them."""
    if node_role(model, name) == "init":
        docs = [init_configuration(model, token, certificate_key, settings),
                cluster_configuration(model, settings),
                kubelet_configuration(model, settings)]
        if not model.get("kube_proxy_replacement"):
            docs.append(kube_proxy_configuration(model, settings))
        return docs
    return [join_configuration(model, name, token, [ca_cert_hash], certificate_key, settings)]


def kubelet_patch(reserved):
    """Strategic-merge patch for kubeadm's ``kubeletconfiguration`` target (may be empty)."""
    patch = {"apiVersion": API_KUBELET, "kind": "KubeletConfiguration"}
    patch.update(reserved or {})
    return patch


KUBELET_PATCH_FILE = "kubeletconfiguration+strategic.yaml"


# --- node-local API server load balancer -----------------------------------------------------

def _split(hostport):
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def apiserver_lb_envoy_config(model, settings=None):
    """Envoy bootstrap: TCP proxy 127.0.0.1:<lb_port> -> every control plane's API server."""
    cfg = merge_settings(settings)
    api = model["apiserver"]
    if not api["backends"]:
        raise KubeadmError("kube_control_plane", [], "no API server backends to balance to")
    admin_port = int(cfg["lb_admin_port"])
    if admin_port in (int(api["lb_port"]), int(api["port"])):
        raise KubeadmError("kubeadm_lb_admin_port", admin_port,
                           "collides with the API server or load balancer port")
    endpoints = []
    for backend in api["backends"]:
        host, port = _split(backend)
        endpoints.append({"endpoint": {"address": {"socket_address": {
            "address": host, "port_value": port}}}})
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "apiserver",
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": int(api["lb_port"])}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                                 "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "apiserver",
                        "cluster": "apiserver",
                    },
                }]}],
            }],
            "clusters": [{
                "name": "apiserver",
                "type": "STATIC",
                "connect_timeout": "2s",
                "lb_policy": "ROUND_ROBIN",
                "health_checks": [{
                    "timeout": "2s",
                    "interval": "5s",
                    "no_traffic_interval": "5s",
                    "unhealthy_threshold": 2,
                    "healthy_threshold": 1,
                    "tcp_health_check": {},
                }],
                "load_assignment": {"cluster_name": "apiserver",
                                    "endpoints": [{"lb_endpoints": endpoints}]},
            }],
        },
    }


def apiserver_lb_pod(model, settings=None, config_hash=""):
    """The static pod running Envoy on the host network of every node."""
    cfg = merge_settings(settings)
    admin_port = int(cfg["lb_admin_port"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": LB_NAME,
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/name": LB_NAME,
                       "app.kubernetes.io/part-of": "kubeflat"},
        },
        "spec": {
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "containers": [{
                "name": "envoy",
                "image": cfg["lb_image"],
                "command": ["envoy"],
                "args": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "warn"],
                "resources": {"requests": {"cpu": "25m", "memory": "32Mi"},
                              "limits": {"memory": "128Mi"}},
                "livenessProbe": {
                    "httpGet": {"host": "127.0.0.1", "port": admin_port, "path": "/ready"},
                    "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 2,
                },
                "volumeMounts": [{"name": "config", "mountPath": "/etc/envoy",
                                  "readOnly": True}],
            }],
            "volumes": [{"name": "config",
                         "hostPath": {"path": LB_CONFIG_DIR, "type": "Directory"}}],
        },
    }
    if config_hash:
        # A changed config changes the manifest, so the kubelet restarts the pod.
        pod["metadata"]["annotations"] = {"kubeflat.io/config-hash": config_hash}
    return pod


# --- secrets ---------------------------------------------------------------------------------

_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate_token():
    """A fresh bootstrap token (cryptographically random)."""
    pick = secrets.choice
    return "%s.%s" % ("".join(pick(_TOKEN_ALPHABET) for _unused in range(6)),
                      "".join(pick(_TOKEN_ALPHABET) for _unused in range(16)))


def generate_certificate_key():
    return secrets.token_hex(32)


def generate_ca(common_name="kubernetes", days=3650):
    """A self-signed cluster CA (RSA 2048, as kubeadm makes it): (cert_pem, key_pem) bytes.

    Runs on the controller (needs the ``cryptography`` package ansible-core depends on).
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                         key_cert_sign=True, content_commitment=False,
                                         data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def ca_cert_hash(cert_pem):
    """kubeadm's CA pin: ``sha256:`` + SHA-256 of the DER SubjectPublicKeyInfo."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if isinstance(cert_pem, str):
        cert_pem = cert_pem.encode()
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise KubeadmError("kubeadm_ca_cert", "<pem>", "not a PEM certificate: %s" % exc)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


# --- commands --------------------------------------------------------------------------------

def kubeadm_commands(model, name, settings=None, kubeadm="kubeadm"):
    """Argument lists a node runs, by step. Secrets stay in the 0600 config file, never argv.

    ``install``: init (first control plane) or join. ``refresh``: run on the first control
    plane before late joins (re-create the bootstrap token and re-upload the certificates,
    which expire after 2 h).
    """
    cfg = merge_settings(settings)
    config = cfg["config_dir"] + "/kubeadm.yaml"
    role = node_role(model, name)
    if role == "init":
        install = [kubeadm, "init", "--config", config, "--upload-certs"]
    else:
        install = [kubeadm, "join", "--config", config]
    refresh = [[kubeadm, "token", "create", "--config", config],
               [kubeadm, "init", "phase", "upload-certs", "--upload-certs", "--config", config]]
    return {"role": role, "install": install,
            "refresh": refresh if role == "init" else []}
