# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Jinja filters: every role's inputs validated once (over plugin_utils/kubeflat_inputs.py).

``kubeflat_input_errors`` replaces the per-role, per-host argument_specs validation tasks with
one call in the preflight, on the controller: Ansible's own ArgumentSpecValidator over every
role's ``meta/argument_specs.yml`` plus kubeflat's value rules, for the variables each host
defines. ``kubeflat_input_warnings`` lists role-prefixed variables no role knows (typos).
"""

from __future__ import absolute_import, division, print_function

DOCUMENTATION = r"""
name: kubeflat_input_errors
short_description: Validate every kubeflat role's inputs for every host at once
description:
  - Loads C(roles/*/meta/argument_specs.yml) (and each role's defaults) and validates, for
    every host, each variable that carries a role prefix and that the role's spec knows, with
    ansible-core's C(ArgumentSpecValidator) (types, choices, elements, required, sub-options)
    plus kubeflat's rules (ports, ranges, prefix lengths, DNS labels and names, addresses).
  - A value shared by many hosts (group_vars) is validated once and reported once, naming the
    hosts. Unset variables take the role default and are not validated again.
  - With O(hostvars), a value that holds nothing to template (no Jinja in any string) is read
    untemplated, once per distinct value, instead of being templated once per host; any other
    value is templated per host as before.
  - The companion filter C(kubeflat_input_warnings) takes the same arguments and returns
    warnings for role-prefixed variables that no role knows, with the closest known name.
positional: _input, roles_dir
options:
  _input:
    description: C(hostvars), or a list of hostvars (each with C(inventory_hostname)).
    type: raw
    required: true
  roles_dir:
    description: Directory holding the roles; empty means the roles beside this plugin
      (the collection's, or the clone's C(roles/)).
    type: str
    default: ""
  hostvars:
    description: The C(hostvars) variable; its C(raw_get) gives each host's untemplated
      variables. Without it every value is read through O(_input) (templated per host).
    type: raw
"""

EXAMPLES = r"""
- name: Validate every role's inputs once, on the controller
  ansible.builtin.assert:
    that: __input_errors | length == 0
    fail_msg: "{{ __input_errors | join('\n') }}"
    quiet: true
  vars:
    __input_errors: >-
      {{ groups['all'] | map('extract', hostvars) | kubeflat_input_errors(hostvars=hostvars) }}
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
_value:
  description: "One line per problem, C(variable=value: reason (hosts: ...)); empty when valid."
  type: list
  elements: str
"""

import os

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_inputs

ROLES_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "..", "..", "roles"))


def kubeflat_input_errors(hosts, roles_dir="", hostvars=None):
    """Problems in every host's role inputs (see DOCUMENTATION)."""
    specs = kubeflat_inputs.load_role_specs(roles_dir or ROLES_DIR)
    raw_get = getattr(hostvars, "raw_get", None)
    return kubeflat_inputs.validate_inputs(specs, hosts, raw_vars=raw_get)


def kubeflat_input_warnings(hosts, roles_dir=""):
    """Role-prefixed variables that no role knows (probably misspelt)."""
    specs = kubeflat_inputs.load_role_specs(roles_dir or ROLES_DIR)
    return kubeflat_inputs.unknown_inputs(specs, hosts)


class FilterModule(object):
    """kubeflat input validation filters."""

    def filters(self):
        return {
            "input_errors": kubeflat_input_errors,
            "input_warnings": kubeflat_input_warnings,
        }
