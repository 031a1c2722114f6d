# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters for app_specs_restart (controller side, over kubeflat_restart)."""

from __future__ import absolute_import, division, print_function


from ansible.errors import AnsibleFilterError

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_restart


def kubeflat_app_restarts(apps, raw, previous, now):
    """The restart record after this run (see kubeflat_restart.restart_record); refuses an
    unknown app naming app_specs_restart and the value."""
    try:
        return kubeflat_restart.restart_record(apps, raw, previous, now)
    except kubeflat_restart.RestartError as exc:
        raise AnsibleFilterError("kubeflat app specs are invalid: %s" % exc)


def kubeflat_app_restarts_text(record):
    """The record file's content."""
    return kubeflat_restart.record_text(record)


class FilterModule(object):
    """kubeflat app restart filters."""

    def filters(self):
        return {
            "app_restarts": kubeflat_app_restarts,
            "app_restarts_text": kubeflat_app_restarts_text,
        }
