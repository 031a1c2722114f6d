# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters over kubeflat_kubeadm / kubeflat_talos (controller side, cluster stage)."""

from __future__ import absolute_import, division, print_function

import json

import yaml

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_kubeadm
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_talos

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # unit tests without ansible on the path
    AnsibleFilterError = ValueError  # type: ignore


def _guard(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (kubeflat_kubeadm.KubeadmError, kubeflat_talos.TalosError) as exc:
            raise AnsibleFilterError("kubeflat cluster configuration is invalid: %s" % exc)
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _plain(value):
    """Ansible's lazy/tagged containers -> plain JSON types."""
    return json.loads(json.dumps(value))


def kubeflat_yaml_documents(docs):
    """A list of dicts -> one deterministic multi-document YAML text."""
    return "".join("---\n" + yaml.safe_dump(_plain(d), default_flow_style=False, sort_keys=True)
                   for d in docs)


@_guard
def kubeflat_kubeadm_documents(model, name, secrets, settings=None):
    """kubeadm documents for one node (secrets: token, certificate_key, ca_cert)."""
    secrets = _plain(secrets or {})
    ca_hash = kubeflat_kubeadm.ca_cert_hash(secrets.get("ca_cert") or "")
    return kubeflat_kubeadm.node_documents(_plain(model), name, secrets.get("token"),
                                           secrets.get("certificate_key"), ca_hash,
                                           _plain(settings or {}))


def kubeflat_file_entries(docs_by_path, base, mode="0644"):
    """{relative path: [docs]} -> [{path, content, mode}] for kubeflat.cluster.cluster_files (sorted)."""
    docs_by_path = _plain(docs_by_path)
    return [{"path": "%s/%s" % (base, rel), "content": kubeflat_yaml_documents(docs_by_path[rel]),
             "mode": mode} for rel in sorted(docs_by_path)]


@_guard
def kubeflat_kubeadm_node_files(model, base, secrets, settings=None):
    """Every node's kubeadm.yaml as file entries (mode 0600: they carry the join token)."""
    model = _plain(model)
    return kubeflat_file_entries(
        {"nodes/%s/kubeadm.yaml" % name: kubeflat_kubeadm_documents(model, name, secrets, settings)
         for name in model["node_names"]}, base, "0600")


@_guard
def kubeflat_kubeadm_role(model, name):
    return kubeflat_kubeadm.node_role(_plain(model), name)


@_guard
def kubeflat_kubeadm_commands(model, name, settings=None, kubeadm="kubeadm"):
    return kubeflat_kubeadm.kubeadm_commands(_plain(model), name, _plain(settings or {}), kubeadm)


@_guard
def kubeflat_kubelet_reserved(system_reserved, kube_reserved, eviction_hard, prefix="kubeadm_kubelet"):
    return kubeflat_kubeadm.kubelet_reserved(_plain(system_reserved), _plain(kube_reserved),
                                             _plain(eviction_hard), prefix)


@_guard
def kubeflat_kubelet_patch(reserved):
    return kubeflat_kubeadm.kubelet_patch(_plain(reserved))


def kubeflat_lb_enabled(model):
    return kubeflat_kubeadm.lb_enabled(_plain(model))


@_guard
def kubeflat_apiserver_lb(model, settings=None):
    """{'envoy': bootstrap dict, 'pod': static pod dict} for the node-local API load balancer."""
    import hashlib

    envoy = kubeflat_kubeadm.apiserver_lb_envoy_config(_plain(model), _plain(settings or {}))
    digest = hashlib.sha256(kubeflat_yaml_documents([envoy]).encode()).hexdigest()[:16]
    pod = kubeflat_kubeadm.apiserver_lb_pod(_plain(model), _plain(settings or {}), digest)
    return {"envoy": envoy, "pod": pod}


def kubeflat_ca_cert_hash(cert_pem):
    try:
        return kubeflat_kubeadm.ca_cert_hash(cert_pem)
    except kubeflat_kubeadm.KubeadmError as exc:
        raise AnsibleFilterError(str(exc))


@_guard
def kubeflat_talos_patches(model, settings=None):
    """{'common': dict, 'controlplane': dict} cluster-wide Talos patches."""
    model = _plain(model)
    return {"common": kubeflat_talos.common_patch(model),
            "controlplane": kubeflat_talos.controlplane_patch(model, _plain(settings or {}))}


@_guard
def kubeflat_talos_node_patch(model, name, settings=None, reserved=None):
    return kubeflat_talos.node_patch(_plain(model), name, _plain(settings or {}), _plain(reserved or {}))


@_guard
def kubeflat_talos_reserved(system_reserved, kube_reserved, eviction_hard):
    return kubeflat_talos.node_reserved(_plain(system_reserved), _plain(kube_reserved),
                                        _plain(eviction_hard))


@_guard
def kubeflat_talos_plan(model, base, settings=None, talosctl="talosctl"):
    return kubeflat_talos.talosctl_plan(_plain(model), base, _plain(settings or {}), talosctl)


def kubeflat_talos_plan_text(plan, model):
    return kubeflat_talos.plan_text(_plain(model), _plain(plan))


def kubeflat_talos_schema_errors(docs, schema_path):
    """Errors of Talos documents against the JSON schema at schema_path (empty list: valid)."""
    with open(schema_path) as handle:
        schema = json.load(handle)
    return kubeflat_talos.validate_documents(_plain(docs), schema)


class FilterModule(object):
    """kubeflat cluster-stage filters."""

    def filters(self):
        return {
            "yaml_documents": kubeflat_yaml_documents,
            "file_entries": kubeflat_file_entries,
            "kubeadm_node_files": kubeflat_kubeadm_node_files,
            "kubeadm_documents": kubeflat_kubeadm_documents,
            "kubeadm_role": kubeflat_kubeadm_role,
            "kubeadm_commands": kubeflat_kubeadm_commands,
            "kubelet_reserved": kubeflat_kubelet_reserved,
            "kubelet_patch": kubeflat_kubelet_patch,
            "lb_enabled": kubeflat_lb_enabled,
            "apiserver_lb": kubeflat_apiserver_lb,
            "ca_cert_hash": kubeflat_ca_cert_hash,
            "talos_patches": kubeflat_talos_patches,
            "talos_node_patch": kubeflat_talos_node_patch,
            "talos_reserved": kubeflat_talos_reserved,
            "talos_plan": kubeflat_talos_plan,
            "talos_plan_text": kubeflat_talos_plan_text,
            "talos_schema_errors": kubeflat_talos_schema_errors,
        }
