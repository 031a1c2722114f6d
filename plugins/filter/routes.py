# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters for kubeflat's route set and the stage barrier (controller side)."""

from __future__ import absolute_import, division, print_function


__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_routes


def kubeflat_route_items(model, host, source_routes=None, persist_path=None, unit_name=None):
    """kubeflat.cluster.converge arguments (routes, boot unit file, unit) for one host, or None when
    kubeflat owns no routes there (see kubeflat_routes.route_items)."""
    return kubeflat_routes.route_items(
        model, host, source_routes,
        persist_path=persist_path or kubeflat_routes.PERSIST_PATH,
        unit_name=unit_name or kubeflat_routes.UNIT_NAME)


def kubeflat_refused(hostvars, play_hosts_all, play_hosts, register):
    """Hosts of a stage's check that failed for a reason other than being unreachable, as
    ``"host: message"`` lines. An unreachable host must not hold reachable hosts hostage; a
    refusal (bad state or input on any host) stops the stage everywhere before any change."""
    out = []
    active = set(play_hosts)
    for host in play_hosts_all:
        if host in active:
            continue
        result = (hostvars[host] or {}).get(register) or {}
        if result.get("failed") and not result.get("unreachable"):
            out.append("%s: %s" % (host, result.get("msg") or "the check failed"))
    return out


class FilterModule(object):
    """kubeflat route filters."""

    def filters(self):
        return {
            "route_items": kubeflat_route_items,
            "refused": kubeflat_refused,
        }
