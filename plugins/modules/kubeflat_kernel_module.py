#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make sure a kernel module is available: recognise built-in, loaded, or load it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeflat_kernel_module
short_description: Ensure a kernel module is present, recognising built-in modules
description:
  - Reports C(builtin) when the module is compiled into the kernel (modules.builtin, a
    C(/sys/module/NAME) without C(initstate), or its feature on a kernel without loadable
    modules - C(overlay) registered in C(/proc/filesystems), C(/proc/sys/net/bridge) for
    C(br_netfilter)), C(loaded) when it is loaded.
  - Otherwise runs C(modprobe NAME) (changed) and fails with modprobe's message when that
    fails. A kernel without loadable module support where the module is not built in is a
    real failure, never papered over.
options:
  name:
    description: Module name, e.g. C(br_netfilter).
    type: str
    required: true
author: kubeflat contributors
"""

EXAMPLES = r"""
- name: Make sure br_netfilter is there
  kubeflat_kernel_module:
    name: br_netfilter
"""

RETURN = r"""
state:
  description: C(builtin), C(loaded) or C(loaded_now).
  returned: success
  type: str
detail:
  description: How the state was recognised.
  returned: always
  type: str
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kubeflat_nodeprep import (
    MODULE_INDICATORS, NodePrepError, indicator_present, module_state, validate_module_name)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type="str", required=True)),
                           supports_check_mode=True)
    try:
        name = validate_module_name(module.params["name"])
    except NodePrepError as exc:
        module.fail_json(msg=str(exc))
    builtin_file = _read("/lib/modules/%s/modules.builtin" % platform.release()) or ""
    builtin_listed = any(line.strip().endswith("/%s.ko" % name) or
                         line.strip().endswith("/%s.ko" % name.replace("_", "-"))
                         for line in builtin_file.splitlines())
    state, detail = module_state(
        name,
        sys_module=os.path.isdir("/sys/module/" + name),
        sys_initstate=_read("/sys/module/%s/initstate" % name),
        indicator=indicator_present(name, os.path.exists(MODULE_INDICATORS.get(name, "/nonexistent")),
                                    _read("/proc/filesystems")),
        builtin_listed=builtin_listed,
        loadable_support=os.path.exists("/proc/modules"),
    )
    if state in ("builtin", "loaded"):
        module.exit_json(changed=False, state=state, detail=detail)
    if state == "unavailable":
        module.fail_json(msg="kernel module %s is not available: %s" % (name, detail),
                         state=state, detail=detail)
    diff = {"before": "%s: not loaded\n" % name, "after": "%s: loaded\n" % name}
    if module.check_mode:
        module.exit_json(changed=True, state="loaded_now", detail=detail, diff=diff)
    modprobe = module.get_bin_path("modprobe", required=True)
    rc, out, err = module.run_command([modprobe, name])
    if rc != 0:
        module.fail_json(msg="modprobe %s failed: %s" % (name, (err or out).strip()),
                         rc=rc, state=state, detail=detail)
    module.exit_json(changed=True, state="loaded_now", detail="loaded with modprobe", diff=diff)


if __name__ == "__main__":
    main()
