# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters over plugins/module_utils/kubeflat_bgp.py (controller side)."""

from __future__ import absolute_import, division, print_function


__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_bgp
from ansible.errors import AnsibleFilterError  # noqa: E402  pylint: disable=wrong-import-position


def _guard(func, *args):
    try:
        return func(*args)
    except kubeflat_bgp.BgpError as exc:
        raise AnsibleFilterError("kubeflat BGP input is invalid: %s" % exc)


def kubeflat_bgp_bird_config(model, host, password=""):
    """The BIRD 2 config of one node (kubeflat_bgp.bird_config); '' when BGP is off there."""
    return _guard(kubeflat_bgp.bird_config, model, str(host), password or None) or ""


def kubeflat_bgp_routed_outside(model):
    """Outside hosts on segments without nodes (their gateway learned the pod CIDRs)."""
    return kubeflat_bgp.routed_outside_hosts(model)


def kubeflat_bgp_cilium_objects(model, auth_secret=""):
    """The Cilium BGP Control Plane v2 objects (kubeflat_bgp.cilium_bgp_objects)."""
    return _guard(kubeflat_bgp.cilium_bgp_objects, model, str(auth_secret or ""))


class FilterModule(object):
    """kubeflat BGP filters."""

    def filters(self):
        return {
            "bgp_bird_config": kubeflat_bgp_bird_config,
            "bgp_routed_outside": kubeflat_bgp_routed_outside,
            "bgp_cilium_objects": kubeflat_bgp_cilium_objects,
        }
