#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Draw the flat network (segments, nodes, pod CIDRs, outside hosts, routers, routes)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: network_diagram
short_description: Draw the cluster's flat network as DOT, SVG and PNG, with each host's last route check
description:
  - Builds a picture of the network from the cluster model (fact C(kubeflat_model)) with
    plugins/module_utils/kubeflat_diagram.py - host networks (racks with BGP), nodes with
    their address and pod CIDR, outside hosts, rack routers and BGP sessions, and every route
    kubeflat expects on each host (C(<pod CIDR> via <node>)) - and writes
    C(<dest>/<name>.dot), C(<name>.svg) and C(<name>.png).
  - Routes are drawn with the state last found on each host, from this run's registered route
    checks (O(registers), the freshest first; an applied change is drawn as the host has it
    after the change), and for hosts this run did not check (another tag, unreachable) the
    state an earlier run found, kept in C(<dest>/.<name>.routes.json). Each expected route is
    present (green), missing (red, dashed, labelled MISSING) or via the wrong gateway
    (orange); kubeflat routes a host should no longer have are stale (dotted); a host never
    checked shows what the model expects (grey). So converged runs with different tags draw
    the same picture and report C(changed=false).
  - Runs as an action plugin in the controller process (no module is shipped, no host is
    contacted); the task must run with C(delegate_to=localhost). Graphviz C(dot) is started
    only when the DOT source differs from C(<name>.dot) on disk or an output is missing, so a
    converged run starts no process and reports C(changed=false).
  - Without C(dot) on the controller the DOT source is still written and a warning says so.
  - Check mode writes nothing (neither the picture nor the memory) and reports what would change; diff mode shows the DOT change.
  - The task's output line names the SVG (shown without C(-v), like C(debug)).
options:
  dest:
    description: Directory the files are written to (C(kubeflat_render_dir)).
    type: path
    required: true
  model:
    description: The cluster model (fact C(kubeflat_model)).
    type: dict
    required: true
  name:
    description: Base name of the files.
    type: str
    default: network
  dot:
    description: The Graphviz C(dot) command (name on PATH or path).
    type: str
    default: dot
  registers:
    description: Registered C(kubeflat.cluster.converge) results carrying a host's routes, freshest first.
    type: list
    elements: str
    default: [__outside_routes_result, __outside_routes_plan, __cni_static_result, __cni_static_plan]
  max_route_edges:
    description: Above this many routes, only routes that are not right are drawn as edges;
      the others are counted in each host's label.
    type: int
    default: 120
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Draw the network
  kubeflat.cluster.network_diagram:
    dest: "{{ kubeflat_render_dir }}"
    model: "{{ kubeflat_model }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
svg:
  description: Path of the SVG.
  returned: always
  type: str
  sample: inventories/lab.rendered/network.svg
png:
  description: Path of the PNG.
  returned: always
  type: str
dot:
  description: Path of the DOT source.
  returned: always
  type: str
changed_files:
  description: Files written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
routes:
  description: Number of routes per state.
  returned: always
  type: dict
  sample: {present: 8, missing: 1, wrong: 0, expected: 0, stale: 0}
problems:
  description: One line per route that is missing, via the wrong gateway or stale.
  returned: always
  type: list
  elements: str
  sample: ["db1: missing 10.244.2.0/24 via 10.77.0.22"]
checked_hosts:
  description: Hosts whose routes were checked in this run.
  returned: always
  type: list
  elements: str
remembered_hosts:
  description: Hosts not checked in this run, drawn as an earlier run found them.
  returned: always
  type: list
  elements: str
"""

# The code is the action plugin plugins/action/network_diagram.py (it runs in the
# controller process). This file documents it.
