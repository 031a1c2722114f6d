# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node preparation decisions, as pure functions (kernel modules).

kubeflat.cluster.converge (module_utils/kubeflat_host.py) gathers the facts (files under /sys and
/proc) and asks these functions what they mean, so unit tests can cover every
case, including the ones only a container or a module-less kernel produces.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

import re

__metaclass__ = type

# Evidence that a module's feature is in the running kernel (built in or loaded), visible even
# inside a container whose /sys/module is not the host's: a file, or a registered filesystem.
MODULE_INDICATORS = {
    "br_netfilter": "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "overlay": "filesystem overlay in /proc/filesystems",
}
FILESYSTEM_MODULES = ("overlay",)
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class NodePrepError(InputError):
    """Refused input; ``str()`` names the variable, the value and the reason."""


def validate_module_name(name):
    if not isinstance(name, str) or not _MODULE_NAME.match(name):
        raise NodePrepError("node_prep_kernel_modules", name, "not a kernel module name")
    return name.replace("-", "_")


def indicator_present(name, path_exists, filesystems_text):
    """Whether the feature of module ``name`` is present: a registered filesystem for
    filesystem modules (from /proc/filesystems), else the indicator file (``path_exists``)."""
    if name in FILESYSTEM_MODULES:
        return any(line.split() and line.split()[-1] == name
                   for line in (filesystems_text or "").splitlines())
    return bool(path_exists)


def module_state(name, sys_module, sys_initstate, indicator, builtin_listed, loadable_support):
    """Classify a kernel module from what the node shows.

    ``sys_module``: /sys/module/NAME exists; ``sys_initstate``: content of
    /sys/module/NAME/initstate (None when absent: built-in modules have none); ``indicator``: the
    feature file of MODULE_INDICATORS exists; ``builtin_listed``: NAME is in
    /lib/modules/$(uname -r)/modules.builtin; ``loadable_support``: /proc/modules exists.

    Returns ``(state, detail)`` where state is ``builtin``, ``loaded``, ``loadable`` (modprobe
    should load it) or ``unavailable`` (cannot be had on this kernel: a real failure).
    """
    name = validate_module_name(name)
    if sys_initstate is not None and sys_initstate.strip() == "live":
        return "loaded", "%s is loaded (/sys/module/%s/initstate is live)" % (name, name)
    if builtin_listed:
        return "builtin", "%s is built into the kernel (listed in modules.builtin)" % name
    if sys_module and sys_initstate is None:
        return "builtin", "%s is built into the kernel (/sys/module/%s has no initstate)" % (name, name)
    if indicator:
        return "builtin", ("%s is built into the kernel (%s present, module not loadable)"
                           % (name, MODULE_INDICATORS.get(name)) if not loadable_support else
                           "%s's feature is present (%s)" % (name, MODULE_INDICATORS.get(name)))
    if loadable_support:
        return "loadable", "%s is not loaded; modprobe will load it" % name
    return "unavailable", ("%s is neither built in nor loadable: this kernel has no loadable "
                           "module support (/proc/modules missing)" % name)
