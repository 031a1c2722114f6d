# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters for remove-node and reset (controller side, over kubeflat_owned)."""

from __future__ import absolute_import, division, print_function

import os

from ansible.errors import AnsibleFilterError

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_inputs
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_owned as owned_utils

ROLES_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "..", "..", "roles"))


def role_defaults(roles_dir=ROLES_DIR):
    """The settings kubeflat_owned reads, from the roles' own defaults files (the same cached
    load the preflight's input check does: kubeflat_inputs.load_role_specs)."""
    merged = dict(owned_utils.SETTINGS)
    specs = kubeflat_inputs.load_role_specs(roles_dir)
    for role in ("cni_static", "outside_routes", "node_prep", "kubeadm"):
        defaults = (specs.get(role) or {}).get("defaults") or {}
        merged.update({k: v for k, v in defaults.items() if k in owned_utils.SETTINGS})
    return merged


def kubeflat_owned(model, host, host_vars=None):
    """What kubeflat owns on ``host`` (see owned_utils.owned): role defaults overlaid by the
    host's own variables (pass ``hostvars[inventory_hostname]``)."""
    settings = dict(role_defaults())
    host_vars = host_vars or {}
    for name in owned_utils.SETTINGS:
        if name in host_vars:
            settings[name] = host_vars[name]
    return owned_utils.owned(model, host, settings)


def kubeflat_removal_items(items, backups=None):
    """kubeflat.cluster.converge arguments that take back what kubeflat_owned listed. ``backups``:
    the registered results of slurping the backup files (a loop) or ``{path: text}``."""
    texts = {}
    if isinstance(backups, dict) and "results" in backups:
        import base64
        for res in backups["results"]:
            if res.get("content") and not res.get("failed"):
                texts[res["item"]] = base64.b64decode(res["content"]).decode("utf-8")
    elif isinstance(backups, dict):
        texts = backups
    return owned_utils.removal_items(items, texts)


def kubeflat_removal_names(model, raw, var="node"):
    """The validated list of nodes to remove; refuses with the variable and value named."""
    try:
        return owned_utils.removal_names(model, raw, var)
    except owned_utils.RemoveError as exc:
        raise AnsibleFilterError("kubeflat refuses to remove: %s" % exc)


def kubeflat_model_without(model, names):
    """The model once ``names`` left (every other node keeps its pod CIDR)."""
    return owned_utils.model_without(model, names)


def kubeflat_unpinned_nodes(model, names):
    """Remaining nodes whose pod CIDR is allocated rather than declared."""
    return owned_utils.unpinned_nodes(model, names)


def kubeflat_route_hosts(model, hosts, exclude=()):
    """The hosts (of ``hosts``, minus ``exclude``) where kubeflat owns routes."""
    return [h for h in hosts if h not in exclude and owned_utils.managed_host(model, h)]


def kubeflat_hosts_not_done(hostvars, hosts, fact="__kubeflat_remove_done"):
    """Hosts on which the removal did not finish (unreachable, or failed): ``fact`` unset."""
    return [h for h in hosts if not (hostvars[h] or {}).get(fact)]


def kubeflat_hosts_unreachable(hostvars, hosts, register):
    """Hosts whose registered result ``register`` says they were unreachable."""
    return [h for h in hosts if ((hostvars[h] or {}).get(register) or {}).get("unreachable")]


class FilterModule(object):
    """kubeflat remove-node / reset filters."""

    def filters(self):
        return {
            "owned": kubeflat_owned,
            "removal_items": kubeflat_removal_items,
            "removal_names": kubeflat_removal_names,
            "model_without": kubeflat_model_without,
            "unpinned_nodes": kubeflat_unpinned_nodes,
            "route_hosts": kubeflat_route_hosts,
            "hosts_not_done": kubeflat_hosts_not_done,
            "hosts_unreachable": kubeflat_hosts_unreachable,
        }
