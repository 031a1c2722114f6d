#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write many rendered files at once (controller side), only when their content or mode differ."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cluster_files
short_description: Write rendered cluster artefacts in one call, atomically and idempotently
description:
  - Creates O(directories) with their modes, then writes every entry of O(files) whose content
    or mode differs, atomically (temporary file with the final mode, then rename), so a secret
    is never readable by others, not even briefly.
  - One call for all of a stage's files instead of one copy task per file per host, which
    dominates the run time of a render on a busy controller.
  - Check mode writes nothing and reports what would change; diff mode returns one diff per file.
    Use C(no_log) on the task when a file holds secrets (the diff would show them).
options:
  directories:
    description: Directories to create first, each C({path, mode}).
    type: list
    elements: dict
    default: []
  files:
    description: Files to write, each C({path, content, mode}) (mode as an octal string).
    type: list
    elements: dict
    required: true
author: kubeflat contributors (@kubeflat)
"""

EXAMPLES = r"""
- name: Write the Talos patches
  kubeflat.cluster.cluster_files:
    directories: [{path: /srv/rendered/talos, mode: "0700"}]
    files:
      - {path: /srv/rendered/talos/patches/common.yaml, content: "...", mode: "0644"}
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
changed_files:
  description: Paths written (or that would be written in check mode).
  returned: always
  type: list
  elements: str
"""

import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _mode(value, what):
    try:
        return int(str(value), 8)
    except ValueError:
        raise ValueError("%s: mode %r is not an octal string like '0600'" % (what, value))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[]),
            files=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    changed = []
    diffs = []
    try:
        for entry in module.params["directories"]:
            path, mode = entry["path"], _mode(entry.get("mode", "0755"), entry["path"])
            if not os.path.isdir(path):
                changed.append(path)
                diffs.append({"before_header": path, "after_header": path,
                              "before": "", "after": "directory %s\n" % oct(mode)})
                if not module.check_mode:
                    os.makedirs(path, mode)
                    os.chmod(path, mode)
            elif stat.S_IMODE(os.stat(path).st_mode) != mode:
                changed.append(path)
                if not module.check_mode:
                    os.chmod(path, mode)
        for entry in module.params["files"]:
            path = entry["path"]
            content = entry.get("content") or ""
            mode = _mode(entry.get("mode", "0644"), path)
            before = None
            if os.path.exists(path):
                with open(path) as handle:
                    before = handle.read()
            same_mode = before is not None and stat.S_IMODE(os.stat(path).st_mode) == mode
            if before == content and same_mode:
                continue
            changed.append(path)
            diffs.append({"before_header": path, "after_header": path,
                          "before": before or "", "after": content})
            if module.check_mode:
                continue
            directory = os.path.dirname(path)
            if not os.path.isdir(directory):
                module.fail_json(msg="directory %s does not exist (list it in directories)" % directory)
            if before == content:
                os.chmod(path, mode)
                continue
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kubeflat-")
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "w") as handle:
                    handle.write(content)
                os.rename(tmp, path)
            except Exception:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
    except (OSError, ValueError) as exc:
        module.fail_json(msg=str(exc), changed_files=changed)
    module.exit_json(changed=bool(changed), changed_files=changed, diff=diffs)


if __name__ == "__main__":
    main()
