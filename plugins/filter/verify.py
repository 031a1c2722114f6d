# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters for playbooks/verify.yml (over plugins/module_utils/kubeflat_verify.py)."""

from __future__ import absolute_import, division, print_function


__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_verify


def kubeflat_verify_cells(results, source, expected_source):
    """Matrix cells from one source's registered probe loop results."""
    return kubeflat_verify.probe_cells(list(results or []), source, expected_source)


def kubeflat_verify_table(cells):
    """The reachability matrix as lines of text."""
    return kubeflat_verify.matrix_table(list(cells))


def kubeflat_verify_failed(cells):
    """The failed cells."""
    return kubeflat_verify.failed_cells(list(cells))


class FilterModule(object):
    """kubeflat verify filters."""

    def filters(self):
        return {
            "verify_cells": kubeflat_verify_cells,
            "verify_table": kubeflat_verify_table,
            "verify_failed": kubeflat_verify_failed,
        }
