# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters for the CNI roles over plugins/module_utils (controller side).

Builders (kubeflat_flannel, kubeflat_cilium), checks (kubeflat_cni_checks) and deterministic
YAML serialisation. Invalid options raise an error whose message names the variable.
"""

from __future__ import absolute_import, division, print_function

import json
import shlex
import shutil

import yaml

from ansible.errors import AnsibleFilterError

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_cilium
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_cni_checks
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_flannel


def _plain(data):
    """Ansible's tagged/lazy containers and strings -> plain JSON types."""
    return json.loads(json.dumps(data))


def _guard(func, *args):
    try:
        return func(*[_plain(a) for a in args])
    except (kubeflat_flannel.FlannelError, kubeflat_cilium.CiliumError) as exc:
        raise AnsibleFilterError("invalid CNI option: %s" % exc)


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings (embedded JSON) as literal blocks."""


def _str_representer(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def cni_yaml(data):
    """One YAML document, keys sorted, block style."""
    return yaml.dump(_plain(data), Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     explicit_start=True)


def cni_yaml_documents(objects):
    """A multi-document YAML stream (one object per document, keys sorted)."""
    return yaml.dump_all(_plain(list(objects)), Dumper=_Dumper, sort_keys=True,
                         default_flow_style=False, explicit_start=True)


def cni_flannel_manifest(model, options):
    """flannel objects for the model (see kubeflat_flannel.build_manifest)."""
    return _guard(kubeflat_flannel.build_manifest, model, options)


def cni_flannel_net_conf(objects):
    """The parsed net-conf.json of a flannel manifest."""
    return kubeflat_flannel.manifest_net_conf(_plain(objects))


def cni_cilium_values(model, options):
    """Cilium Helm values for the model (see kubeflat_cilium.build_values)."""
    return _guard(kubeflat_cilium.build_values, model, options)


def cni_cilium_lb_objects(model, options):
    """LB IPAM pool / L2 announcement objects (see kubeflat_cilium.build_lb_ipam_objects)."""
    return _guard(kubeflat_cilium.build_lb_ipam_objects, model, options)


def cni_cilium_install_argv(options, values_path, helm="helm", kubeconfig=None):
    """The exact helm upgrade --install argument list."""
    return kubeflat_cilium.install_argv(_plain(options), str(values_path), str(helm),
                                        str(kubeconfig) if kubeconfig else None)


def cni_cilium_repo_add_argv(options, helm="helm"):
    """helm repo add argument list, or None for a local/OCI chart."""
    return kubeflat_cilium.repo_add_argv(_plain(options), str(helm))


def cni_shell_join(argv):
    """A shell-quoted command line from an argument list (for scripts shown to people)."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def cni_which(name):
    """Absolute path of an executable on the controller's PATH (or the path itself), or ''."""
    return shutil.which(str(name)) or ""


def cni_live_nodes(resources):
    """k8s_info Node resources -> [{'name', 'pod_cidr'}]."""
    out = []
    for node in _plain(resources or []):
        out.append({"name": node["metadata"]["name"],
                    "pod_cidr": (node.get("spec") or {}).get("podCIDR")})
    return out


def cni_pod_cidr_assignments(model, live_nodes):
    """Registered nodes without spec.podCIDR and the model's CIDR for each."""
    return kubeflat_cni_checks.pod_cidr_assignments(_plain(model), _plain(live_nodes))


def cni_check_flannel_network(net_conf, pod_cidr, where="rendered net-conf.json"):
    """Check result: flannel Network == pod CIDR, host-gw."""
    return kubeflat_cni_checks.check_flannel_network(_plain(net_conf), str(pod_cidr), where)


def cni_check_node_pod_cidrs(model, live_nodes=None):
    """Check result: every node has a pod CIDR (model, or live nodes)."""
    return kubeflat_cni_checks.check_node_pod_cidrs(
        _plain(model), None if live_nodes is None else _plain(live_nodes))


def cni_check_cilium_status(status, expect_kpr=True):
    """Check result: Cilium agent Ok and kube-proxy replacement as expected."""
    return kubeflat_cni_checks.check_cilium_status(
        None if status is None else _plain(status), bool(expect_kpr))


def cni_check_message(results):
    """Readable message of the failing results ('' when all passed)."""
    return kubeflat_cni_checks.failure_message(_plain(results))


class FilterModule(object):
    """kubeflat CNI filters."""

    def filters(self):
        return {
            "cni_yaml": cni_yaml,
            "cni_yaml_documents": cni_yaml_documents,
            "cni_flannel_manifest": cni_flannel_manifest,
            "cni_flannel_net_conf": cni_flannel_net_conf,
            "cni_cilium_values": cni_cilium_values,
            "cni_cilium_lb_objects": cni_cilium_lb_objects,
            "cni_cilium_install_argv": cni_cilium_install_argv,
            "cni_cilium_repo_add_argv": cni_cilium_repo_add_argv,
            "cni_shell_join": cni_shell_join,
            "cni_which": cni_which,
            "cni_live_nodes": cni_live_nodes,
            "cni_pod_cidr_assignments": cni_pod_cidr_assignments,
            "cni_check_flannel_network": cni_check_flannel_network,
            "cni_check_node_pod_cidrs": cni_check_node_pod_cidrs,
            "cni_check_cilium_status": cni_check_cilium_status,
            "cni_check_message": cni_check_message,
        }
