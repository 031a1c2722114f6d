# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kubeflat.cluster.loaded``: true once kubeflat's filters are loaded in this process.

Ansible loads every filter file of a collection the first time one of its filters is used in a
process, and forks a worker per task per host from the controller process. A worker that
templates a kubeflat filter (every stage's check does) would import them all itself: ≈ 35 ms of
controller CPU per worker, so ≈ 3.5 s on 50 hosts with two stages. The preflight uses this
filter in a ``meta`` task's condition, which Ansible evaluates in the controller process
itself: the filters are loaded there once, and every worker forked later inherits them.
"""

from __future__ import absolute_import, division, print_function

DOCUMENTATION = r"""
name: loaded
short_description: True once kubeflat's filters are loaded in this process
description:
  - Returns true. Using it in a C(meta) task's C(when) (evaluated in the controller process,
    without a worker) loads kubeflat's filter plugins there once, so the workers forked for
    later tasks inherit them instead of each importing them again.
positional: _input
options:
  _input:
    description: Anything; it is ignored.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Load kubeflat's filters in the controller process (workers forked later inherit them)
  ansible.builtin.meta: end_play
  when: not (none | kubeflat.cluster.loaded)
"""

RETURN = r"""
_value:
  description: Always true.
  type: bool
"""

__metaclass__ = type


def kubeflat_loaded(_value):
    """True (see the module docstring for why this exists)."""
    return True


class FilterModule(object):
    """kubeflat's preload filter."""

    def filters(self):
        return {"loaded": kubeflat_loaded}
