# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters over plugins/module_utils (controller side)."""

from __future__ import absolute_import, division, print_function

import os
import sys

__metaclass__ = type

_UTILS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils")
if _UTILS not in sys.path:
    sys.path.insert(0, _UTILS)

import kubeflat_model  # noqa: E402  pylint: disable=wrong-import-position


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
            "kubeflat_host_inputs": kubeflat_host_inputs,
            "kubeflat_peer_routes": kubeflat_peer_routes,
            "kubeflat_node": kubeflat_node,
        }
