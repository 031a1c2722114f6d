# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Talos machine configuration, built as data from the cluster model, and the talosctl plan.

Talos nodes have no shell: everything a node needs comes from its machine configuration. kubeflat
builds the parts it owns as *patches* (plain dicts, validated against the Talos JSON schema) and
lets ``talosctl gen config --with-secrets`` merge them with the secrets bundle, because only
talosctl creates Talos' secrets bundle and signs its certificates:

* :func:`common_patch` -- cluster-wide: pod/service subnets and DNS domain from the model,
  ``cluster.network.cni.name: none`` (kubeflat's network stage deploys static/flannel host-gw/
  cilium itself; Talos' built-in flannel is a VXLAN overlay), ``cluster.proxy.disabled`` when
  Cilium replaces kube-proxy, no controller-manager pod CIDR allocation (the model owns them),
  ``machine.kubelet.clusterDNS`` = the control-plane addresses and ``cluster.coreDNS.disabled``
  in the default DNS mode (``kubeflat_dns_mode: control_planes``).
* :func:`controlplane_patch` -- API server certificate SANs.
* :func:`node_patch` -- per node: hostname, install disk, static address and default route, the
  static-mode pod routes to every other node, kubelet reserved resources.
  Talos v1.11 takes the network in ``machine.network.interfaces[]``; v1.12 removed that in favour
  of ``HostnameConfig``/``LinkConfig``/``ResolverConfig`` documents, so the patch is multi-document.
* :func:`validate_documents` -- every document against the Talos schema (jsonschema).
* :func:`talosctl_plan` -- the exact talosctl command lines, step by step.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

import re

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_kubeadm import (
    KubeadmError, kubelet_reserved, normalize_version)

__metaclass__ = type

TALOS_VERSIONS = ("v1.11", "v1.12")
DEFAULT_SETTINGS = {
    "talos_version": "v1.12",
    "kubernetes_version": "v1.37.0",
    "install_image": "ghcr.io/siderolabs/installer:v1.12.0",
    "install_disk": "/dev/sda",
    "interface": "eth0",
    "gateway": "",
    "nameservers": [],
    "cert_sans": [],
}
_IFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


class TalosError(InputError):
    """Invalid Talos input. ``str()`` names the variable, the value and the reason."""


def merge_settings(settings):
    cfg = dict(DEFAULT_SETTINGS)
    for key, value in (settings or {}).items():
        if key not in DEFAULT_SETTINGS:
            raise TalosError("talos_" + key, value, "unknown Talos setting")
        if value is not None:
            cfg[key] = value
    if cfg["talos_version"] not in TALOS_VERSIONS:
        raise TalosError("talos_version", cfg["talos_version"],
                         "must be one of %s" % ", ".join(TALOS_VERSIONS))
    try:
        cfg["kubernetes_version"] = normalize_version(cfg["kubernetes_version"],
                                                      "talos_kubernetes_version")
    except KubeadmError as exc:
        raise TalosError(exc.var, exc.value, exc.reason)
    if not str(cfg["install_disk"]).startswith("/dev/"):
        raise TalosError("talos_install_disk", cfg["install_disk"], "must be a /dev/ path")
    if not _IFACE.match(str(cfg["interface"])):
        raise TalosError("talos_interface", cfg["interface"], "not a valid interface name")
    if cfg["gateway"] and not _IPV4.match(str(cfg["gateway"])):
        raise TalosError("talos_gateway", cfg["gateway"], "must be an IPv4 address")
    for i, server in enumerate(cfg["nameservers"] or []):
        if not _IPV4.match(str(server)):
            raise TalosError("talos_nameservers[%d]" % i, server, "must be an IPv4 address")
    return cfg


def _node(model, name):
    for node in model["nodes"]:
        if node["name"] == name:
            return node
    raise TalosError("inventory_hostname", name, "is not a cluster node in kubeflat_model")


def endpoint_url(model):
    return "https://%s" % model["apiserver"]["endpoint"]


def common_patch(model):
    """Cluster-wide patch (both machine types)."""
    patch = {
        "cluster": {
            "network": {
                "cni": {"name": "none"},
                "dnsDomain": model["cluster_domain"],
                "podSubnets": [model["pod_cidr"]],
                "serviceSubnets": [model["service_cidr"]],
            },
            "controllerManager": {"extraArgs": {"allocate-node-cidrs": "false"}},
        },
        "machine": {
            "kubelet": {"nodeIP": {"validSubnets": list(model["host_networks"])}},
        },
    }
    if model.get("kube_proxy_replacement"):
        patch["cluster"]["proxy"] = {"disabled": True}
    if model.get("dns_mode") == "control_planes":
        # Pods resolve through the control-plane addresses, where kubeflat's CoreDNS
        # DaemonSet binds; Talos' own CoreDNS Deployment (behind the VIP) is not deployed.
        patch["machine"]["kubelet"]["clusterDNS"] = list(model["cluster_dns"])
        patch["cluster"]["coreDNS"] = {"disabled": True}
    return patch


def controlplane_patch(model, settings=None):
    cfg = merge_settings(settings)
    sans = [model["apiserver"]["endpoint_host"]]
    sans += [_node(model, n)["address"] for n in model["control_planes"]]
    sans += [str(s) for s in cfg["cert_sans"]]
    return {"cluster": {"apiServer": {"certSANs": sorted(set(sans))}}}


def pod_routes(model, name):
    """Static mode: a route to every other node's pod CIDR via that node (none otherwise)."""
    if model["cni"] != "static":
        return []
    return [{"dest": r["dest"], "via": r["via"]} for r in model["pod_routes"] if r["node"] != name]


def node_patch(model, name, settings=None, reserved=None):
    """Per-node patch documents (a list: one for v1.11, several for v1.12)."""
    cfg = merge_settings(settings)
    node = _node(model, name)
    prefix = node["network"].split("/")[1]
    address = "%s/%s" % (node["address"], prefix)
    routes = pod_routes(model, name)
    machine = {
        "install": {"disk": cfg["install_disk"], "image": cfg["install_image"], "wipe": False},
    }
    if reserved:
        machine["kubelet"] = {"extraConfig": dict(reserved)}
    if cfg["talos_version"] == "v1.11":
        iface = {"interface": cfg["interface"], "addresses": [address], "dhcp": False}
        iface_routes = []
        if cfg["gateway"]:
            iface_routes.append({"network": "0.0.0.0/0", "gateway": cfg["gateway"]})
        iface_routes += [{"network": r["dest"], "gateway": r["via"]} for r in routes]
        if iface_routes:
            iface["routes"] = iface_routes
        machine["network"] = {"hostname": name, "interfaces": [iface]}
        if cfg["nameservers"]:
            machine["network"]["nameservers"] = list(cfg["nameservers"])
        return [{"machine": machine}]
    # v1.12: network configuration as separate documents.
    link = {"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": cfg["interface"], "up": True,
            "addresses": [{"address": address}]}
    link_routes = []
    if cfg["gateway"]:
        link_routes.append({"destination": "0.0.0.0/0", "gateway": cfg["gateway"]})
    link_routes += [{"destination": r["dest"], "gateway": r["via"]} for r in routes]
    if link_routes:
        link["routes"] = link_routes
    docs = [{"machine": machine},
            {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": name, "auto": "off"},
            link]
    if cfg["nameservers"]:
        docs.append({"apiVersion": "v1alpha1", "kind": "ResolverConfig",
                     "nameservers": [{"address": s} for s in cfg["nameservers"]]})
    return docs


def node_reserved(system_reserved=None, kube_reserved=None, eviction_hard=None):
    """kubelet reserved resources for a Talos node (same rules as kubeadm's)."""
    try:
        return kubelet_reserved(system_reserved, kube_reserved, eviction_hard,
                                prefix="talos_kubelet")
    except KubeadmError as exc:
        raise TalosError(exc.var, exc.value, exc.reason)


# --- validation ------------------------------------------------------------------------------

def _definition_for(doc, schema):
    """The $defs entry a document must satisfy (by kind; the v1alpha1 Config otherwise)."""
    if isinstance(doc, dict) and "kind" in doc:
        for ref in schema.get("oneOf", []):
            name = ref["$ref"].rsplit("/", 1)[1]
            kind = schema["$defs"][name].get("properties", {}).get("kind", {})
            if doc["kind"] in kind.get("enum", []):
                return name
        return None
    return "v1alpha1.Config"


def validate_documents(docs, schema):
    """Validate Talos config documents (full configs or patches) against a Talos JSON schema.

    Returns a list of error strings (empty when all are valid). Patches validate because the
    schema requires no v1alpha1 field, while unknown fields, wrong types and bad enums fail.
    """
    import jsonschema

    errors = []
    for index, doc in enumerate(docs):
        name = _definition_for(doc, schema)
        if name is None:
            errors.append("document %d: kind %r is not in this Talos schema" % (index, doc.get("kind")))
            continue
        sub = {"$schema": schema.get("$schema"), "$defs": schema["$defs"],
               "$ref": "#/$defs/%s" % name}
        validator = jsonschema.Draft202012Validator(sub)
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in err.absolute_path) or "(root)"
            errors.append("document %d (%s) at %s: %s" % (index, name, path, err.message))
    return errors


# --- talosctl plan ---------------------------------------------------------------------------

def paths(base):
    """Where the Talos artefacts live under ``<render dir>/talos``."""
    return {
        "base": base,
        "secrets": base + "/secrets.yaml",
        "patch_common": base + "/patches/common.yaml",
        "patch_controlplane": base + "/patches/controlplane.yaml",
        "generated": base + "/generated",
        "controlplane": base + "/generated/controlplane.yaml",
        "worker": base + "/generated/worker.yaml",
        "talosconfig": base + "/talosconfig",
        "kubeconfig": base + "/kubeconfig",
        "node_patch": base + "/patches/nodes/%s.yaml",
        "node_config": base + "/nodes/%s.yaml",
        "plan": base + "/plan.txt",
    }


def talosctl_plan(model, base, settings=None, talosctl="talosctl"):
    """The exact talosctl command lines, in order, as argument lists.

    Returns ``{"gen_secrets", "gen_config", "patch": {node: argv}, "probe": {node: argv},
    "apply_insecure": {node: argv}, "apply": {node: argv}, "apply_dry_run": {node: argv},
    "bootstrap", "kubeconfig", "bootstrap_node"}``. Secrets never appear in an argument: they
    stay in 0600 files.
    """
    cfg = merge_settings(settings)
    p = paths(base)
    bootstrap_node = model["control_planes"][0]
    bootstrap_addr = _node(model, bootstrap_node)["address"]
    plan = {
        "bootstrap_node": bootstrap_node,
        "gen_secrets": [talosctl, "gen", "secrets", "--output-file", p["secrets"],
                        "--talos-version", cfg["talos_version"]],
        "gen_config": [talosctl, "gen", "config", model["cluster_name"], endpoint_url(model),
                       "--with-secrets", p["secrets"],
                       "--talos-version", cfg["talos_version"],
                       "--kubernetes-version", cfg["kubernetes_version"].lstrip("v"),
                       "--config-patch", "@" + p["patch_common"],
                       "--config-patch-control-plane", "@" + p["patch_controlplane"],
                       "--output-types", "controlplane,worker",
                       "--with-docs=false", "--with-examples=false",
                       "--output", p["generated"], "--force"],
        "gen_talosconfig": [talosctl, "gen", "config", model["cluster_name"], endpoint_url(model),
                            "--with-secrets", p["secrets"],
                            "--talos-version", cfg["talos_version"],
                            "--output-types", "talosconfig",
                            "--output", p["talosconfig"], "--force"],
        "patch": {}, "probe": {}, "apply_insecure": {}, "apply": {}, "apply_dry_run": {},
        "bootstrap": [talosctl, "--talosconfig", p["talosconfig"], "bootstrap",
                      "--nodes", bootstrap_addr, "--endpoints", bootstrap_addr],
        "kubeconfig": [talosctl, "--talosconfig", p["talosconfig"], "kubeconfig", p["kubeconfig"],
                       "--nodes", bootstrap_addr, "--endpoints", bootstrap_addr, "--force"],
    }
    for node in model["nodes"]:
        name, addr = node["name"], node["address"]
        base_cfg = p["controlplane"] if node["control_plane"] else p["worker"]
        config = p["node_config"] % name
        plan["patch"][name] = [talosctl, "machineconfig", "patch", base_cfg,
                               "--patch", "@" + (p["node_patch"] % name), "--output", config]
        secure = [talosctl, "--talosconfig", p["talosconfig"]]
        plan["probe"][name] = secure + ["version", "--nodes", addr, "--endpoints", addr]
        plan["apply_insecure"][name] = [talosctl, "apply-config", "--insecure", "--nodes", addr,
                                        "--file", config]
        plan["apply"][name] = secure + ["apply-config", "--nodes", addr, "--endpoints", addr,
                                        "--file", config]
        plan["apply_dry_run"][name] = plan["apply"][name] + ["--dry-run"]
    return plan


def plan_text(model, plan):
    """The plan as shell-quoted lines, for humans (written to plan.txt; contains no secret)."""
    import shlex

    def line(argv):
        return " ".join(shlex.quote(a) for a in argv)

    out = ["# kubeflat Talos plan for cluster %s (run on the controller, in this order)"
           % model["cluster_name"],
           "# 1. secrets, once (skipped when secrets.yaml exists or talos_secrets is given)",
           line(plan["gen_secrets"]),
           "# 2. base machine configs and talosconfig from the secrets and kubeflat's patches",
           line(plan["gen_config"]), line(plan["gen_talosconfig"]),
           "# 3. one machine config per node"]
    names = sorted(plan["patch"])
    out += [line(plan["patch"][n]) for n in names]
    out.append("# 4. apply: --insecure on first contact (probe fails), otherwise with talosconfig")
    for n in names:
        out += ["#   %s: probe, then one of:" % n, line(plan["probe"][n]),
                line(plan["apply_insecure"][n]), line(plan["apply"][n])]
    out += ["# 5. bootstrap etcd exactly once, on %s" % plan["bootstrap_node"],
            line(plan["bootstrap"]), "# 6. admin kubeconfig (0600)", line(plan["kubeconfig"])]
    return "\n".join(out) + "\n"
