# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters over plugins/module_utils (controller side)."""

from __future__ import absolute_import, division, print_function


__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_model
from ansible.errors import AnsibleFilterError  # noqa: E402  pylint: disable=wrong-import-position
from ansible.utils.display import Display  # noqa: E402  pylint: disable=wrong-import-position


def kubeflat_cluster_model(settings, hosts, input_errors=None, input_warnings=None):
    """The validated cluster model (kubeflat_model.build_model), built in the controller process.

    ``settings`` are the cluster-wide kubeflat_* inputs without the prefix, ``hosts`` the
    output of ``kubeflat_host_inputs``. ``input_errors`` / ``input_warnings`` are what
    ``kubeflat_input_errors`` / ``kubeflat_input_warnings`` found in the role inputs: errors
    stop the run first, warnings (probably misspelt variables) are shown. Bad input raises an
    error naming the variable and the value, so the preflight stops before any host is
    touched. One filter call, so the preflight is one task."""
    for warning in input_warnings or []:
        Display().warning("kubeflat: %s" % warning)
    if input_errors:
        raise AnsibleFilterError("kubeflat inputs are invalid: %s" % "; ".join(input_errors))
    try:
        return kubeflat_model.build_model(dict(settings), list(hosts))
    except kubeflat_model.ModelError as exc:
        raise AnsibleFilterError("kubeflat inventory is invalid: %s" % exc)


def kubeflat_host_inputs(hostvars_list):
    """Per-host model inputs from a list of hostvars (see kubeflat_model.host_inputs)."""
    return kubeflat_model.host_inputs(list(hostvars_list))


def kubeflat_peer_routes(model, node_name):
    """Pod routes a node needs towards every other node (static mode)."""
    return kubeflat_model.peer_routes(model, node_name)


def kubeflat_node(model, node_name):
    """The model's entry for one node (None if it is not a node)."""
    return kubeflat_model.node_by_name(model, node_name)


class FilterModule(object):
    """kubeflat filters."""

    def filters(self):
        return {
            "cluster_model": kubeflat_cluster_model,
            "host_inputs": kubeflat_host_inputs,
            "peer_routes": kubeflat_peer_routes,
            "node": kubeflat_node,
        }
