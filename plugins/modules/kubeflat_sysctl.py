#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Set one runtime sysctl, telling 'not permitted here' apart from real failures."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kubeflat_sysctl
short_description: Set a runtime sysctl and report precisely when it may not be set here
description:
  - Reads C(/proc/sys/...) and writes the value when it differs (persistence is a separate
    C(/etc/sysctl.d) file written by the role).
  - A write refused with EROFS, EACCES or EPERM (a read-only C(/proc/sys) or a namespaced
    sysctl the container may not change, e.g. C(vm.*) in the lab) is reported as
    C(not_permitted_here); with I(denied=warn) that is a warning, with I(denied=fail) an error.
  - A sysctl that does not exist, or a value the kernel refuses (EINVAL), always fails.
options:
  name:
    description: Sysctl name, e.g. C(net.ipv4.ip_forward).
    type: str
    required: true
  value:
    description: Desired value.
    type: str
    required: true
  denied:
    description: What to do when this host does not permit the write.
    type: str
    choices: [fail, warn]
    default: fail
author: kubeflat contributors
"""

EXAMPLES = r"""
- name: Forward IPv4
  kubeflat_sysctl:
    name: net.ipv4.ip_forward
    value: "1"
"""

RETURN = r"""
status:
  description: C(ok) (already set), C(set), C(not_permitted_here).
  returned: success
  type: str
before:
  description: Value before.
  returned: success
  type: str
"""

import errno

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kubeflat_nodeprep import (
    NodePrepError, classify_write_error, normalize_value, sysctl_path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            value=dict(type="str", required=True),
            denied=dict(type="str", choices=["fail", "warn"], default="fail"),
        ),
        supports_check_mode=True,
    )
    name = module.params["name"]
    try:
        path = sysctl_path(name)
    except NodePrepError as exc:
        module.fail_json(msg=str(exc))
    want = normalize_value(module.params["value"])
    try:
        with open(path) as handle:
            before = normalize_value(handle.read())
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            module.fail_json(msg="sysctl %s does not exist on this kernel (%s missing; is the "
                             "module providing it loaded?)" % (name, path))
        module.fail_json(msg="cannot read sysctl %s: %s" % (name, exc))
    if before == want:
        module.exit_json(changed=False, status="ok", before=before)
    diff = {"before": "%s = %s\n" % (name, before), "after": "%s = %s\n" % (name, want)}
    if module.check_mode:
        module.exit_json(changed=True, status="set", before=before, diff=diff)
    try:
        with open(path, "w") as handle:
            handle.write(want)
    except (IOError, OSError) as exc:
        if classify_write_error(exc.errno) == "not_permitted_here":
            msg = ("sysctl %s cannot be set on this host: %s (%s). It stays %s; the persistent "
                   "setting is written for hosts where it is allowed." % (
                       name, exc.strerror, errno.errorcode.get(exc.errno, exc.errno), before))
            if module.params["denied"] == "fail":
                module.fail_json(msg=msg, status="not_permitted_here", before=before)
            module.warn(msg)
            module.exit_json(changed=False, status="not_permitted_here", before=before, detail=msg)
        module.fail_json(msg="setting sysctl %s=%s failed: %s" % (name, want, exc), before=before)
    with open(path) as handle:
        after = normalize_value(handle.read())
    if after != want:
        module.fail_json(msg="sysctl %s reads %s after writing %s" % (name, after, want))
    module.exit_json(changed=True, status="set", before=before, diff=diff)


if __name__ == "__main__":
    main()
