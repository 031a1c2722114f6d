"""The lab inventory's app catalog and a lab-shaped cluster model, shared by the unit tests
of the renderers (kubeflat_specs, the Envoy batch plan, the render action's staged writes)."""
import os

import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
with open(os.path.join(ROOT, "inventories", "lab", "group_vars", "all", "apps.yml")) as _fh:
    LAB = yaml.safe_load(_fh)
SETTINGS = {"namespace": LAB["app_specs_namespace"]}
_ADDRESSES = {"w1": "10.77.0.21", "w2": "10.77.0.22"}


def lab_model(*workers, **settings):
    """The model of the lab segment with control plane cp1 and ``workers`` (default w1);
    ``settings`` are added to the cluster settings (e.g. ``dns_mode``)."""
    hosts = [{"name": "cp1", "address": "10.77.0.11",
              "groups": ["kube_control_plane", "k8s_cluster"]}]
    hosts += [{"name": name, "address": _ADDRESSES[name], "groups": ["kube_node", "k8s_cluster"]}
              for name in workers or ("w1",)]
    return build_model(dict({"cluster_name": "lab", "distribution": "none",
                             "host_networks": ["10.77.0.0/24"]}, **settings), hosts)
