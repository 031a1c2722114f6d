# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters for the app catalog kept as files (``app_specs_apps_dir``), over
plugins/plugin_utils/kubeflat_catalog_files.py (controller side).

``app_catalog``: the catalog as one list, ``app_specs_apps`` then the files' apps (for the
playbooks that read the catalog themselves: the restart record, verify_edge).
``catalog_dir_errors``: the preflight's check of every catalog directory the hosts name,
before anything changes on any host.
"""

from __future__ import absolute_import, division, print_function

from ansible.errors import AnsibleFilterError

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import SpecError
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_catalog_files

# The variables that name a catalog directory (the ingress role's defaults to the apps role's).
DIR_VARS = ("app_specs_apps_dir", "envoy_ingress_apps_dir")


def kubeflat_app_catalog(apps, directory=""):
    """``apps`` followed by the apps of the catalog files in ``directory`` (if any)."""
    apps = list(apps or [])
    if not directory:
        return apps
    try:
        return apps + kubeflat_catalog_files.load_catalog(directory)[0]
    except SpecError as exc:
        raise AnsibleFilterError("kubeflat app specs are invalid: %s" % exc)


def kubeflat_catalog_dir_errors(hosts, render_dir=""):
    """Problems with the catalog directories that ``hosts`` (a list of hostvars) name, one line
    each (see kubeflat_catalog_files.catalog_dir_errors); each directory is checked once."""
    seen = {}
    for hv in hosts:
        for name in DIR_VARS:
            if name in hv:
                value = hv[name]
                # Other types and relative paths are refused by kubeflat_input_errors (the
                # argument_specs and the absolute-path rule), which names the hosts.
                if isinstance(value, str) and value.startswith("/") and (name, value) not in seen:
                    seen[(name, value)] = kubeflat_catalog_files.catalog_dir_errors(
                        value, render_dir, var=name)
    return [line for errors in seen.values() for line in errors]


class FilterModule(object):
    """kubeflat catalog-file filters."""

    def filters(self):
        return {
            "app_catalog": kubeflat_app_catalog,
            "catalog_dir_errors": kubeflat_catalog_dir_errors,
        }
