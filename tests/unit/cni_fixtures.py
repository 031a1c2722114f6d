"""Shared helpers for the CNI unit tests: cluster models and the reference data location."""
import copy
import os

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REFERENCE = os.path.join(ROOT, "..", "shared", "reference")

HOSTS = [
    {"name": "cp1", "address": "10.77.0.11", "groups": ["kube_control_plane", "k8s_cluster"]},
    {"name": "w1", "address": "10.77.0.21", "groups": ["kube_node", "k8s_cluster"]},
    {"name": "w2", "address": "10.77.0.22", "groups": ["kube_node", "k8s_cluster"]},
    {"name": "db1", "address": "10.77.0.31", "groups": ["k8s_outside"]},
]


def model(**settings):
    cfg = {"cluster_name": "lab", "distribution": "kubeadm", "cni": "flannel",
           "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12",
           "host_networks": ["10.77.0.0/24"]}
    cfg.update(settings)
    return build_model(cfg, copy.deepcopy(HOSTS))
