# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters for the static CNI mode (over plugins/module_utils/kubeflat_cni_static.py)."""

from __future__ import absolute_import, division, print_function


from ansible.errors import AnsibleFilterError

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_cni_static


def kubeflat_cni_static_conflist(model, node_name, bridge="cni0", network_name="kubeflat",
                                 mtu=0):
    """The static-mode CNI conflist of one node, as data (serialise with to_nice_json)."""
    try:
        return kubeflat_cni_static.static_conflist(model, node_name, bridge=bridge,
                                                   network_name=network_name, mtu=mtu)
    except kubeflat_cni_static.CniError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """kubeflat static CNI filters."""

    def filters(self):
        return {"cni_static_conflist": kubeflat_cni_static_conflist}
