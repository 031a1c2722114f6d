# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The value checks shared by the app catalog and the edge settings: integers in a range,
ports, DNS labels, Kubernetes memory/CPU quantities and resources. Each raises
:class:`SpecError` naming the variable and the value."""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import EnvoyError, check_port

__metaclass__ = type

_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_CPU = re.compile(r"^(\d+m|\d+(\.\d{1,3})?)$")
_MEMORY_UNITS = {None: 1, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4,
                 "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}


class SpecError(InputError):
    """An invalid catalog entry or setting; the message names the variable."""


def with_defaults(raw, defaults, prefix):
    """``defaults`` updated with the settings given (None means unset); an unknown key is
    refused as ``<prefix><key>``."""
    cfg = dict(defaults)
    cfg.update({k: v for k, v in (raw or {}).items() if v is not None})
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise SpecError(prefix + unknown[0], cfg[unknown[0]], "unknown setting")
    return cfg


def spec_int(value, var, low, high):
    if isinstance(value, bool):
        raise SpecError(var, value, "must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SpecError(var, value, "must be an integer")
    if str(number) != str(value).strip():
        raise SpecError(var, value, "must be an integer")
    if not low <= number <= high:
        raise SpecError(var, value, "must be between %d and %d" % (low, high))
    return number


def spec_port(value, var):
    try:
        return check_port(value, var)
    except EnvoyError as exc:
        raise SpecError(exc.var, exc.value, exc.reason)


def spec_label(value, var, max_len=63):
    if not isinstance(value, str) or not _LABEL.match(value) or len(value) > max_len:
        raise SpecError(var, value, "must be a DNS label: lower case letters, digits and '-', "
                                    "starting with a letter, at most %d characters" % max_len)
    return value


def parse_memory(value, var):
    """A Kubernetes memory quantity (``256Mi``, ``1G``, ``1048576``) -> bytes."""
    match = _MEMORY.match(str(value).strip()) if not isinstance(value, bool) else None
    if not match:
        raise SpecError(var, value, "must be a memory quantity like 256Mi or 1Gi")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def format_memory(size):
    """Bytes -> the largest exact binary unit (``268435456`` -> ``256Mi``)."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if size and size % _MEMORY_UNITS[unit] == 0:
            return "%d%s" % (size // _MEMORY_UNITS[unit], unit)
    return str(size)


def spec_resources(value, var):
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"requests", "limits"}:
        raise SpecError(var, value, "must be a mapping with requests and/or limits")
    out = {}
    for part in ("requests", "limits"):
        spec = value.get(part) or {}
        if not isinstance(spec, dict) or set(spec) - {"cpu", "memory"}:
            raise SpecError("%s.%s" % (var, part), spec, "must map cpu and/or memory")
        entry = {}
        if "cpu" in spec:
            if not _CPU.match(str(spec["cpu"])) or isinstance(spec["cpu"], bool):
                raise SpecError("%s.%s.cpu" % (var, part), spec["cpu"],
                                "must be a CPU quantity like 250m or 1")
            entry["cpu"] = str(spec["cpu"])
        if "memory" in spec:
            entry["memory"] = format_memory(parse_memory(spec["memory"],
                                                         "%s.%s.memory" % (var, part)))
        if entry:
            out[part] = entry
    req, lim = out.get("requests", {}), out.get("limits", {})
    if "memory" in req and "memory" in lim and \
            parse_memory(req["memory"], var) > parse_memory(lim["memory"], var):
        raise SpecError("%s.requests.memory" % var, req["memory"],
                        "larger than limits.memory %s" % lim["memory"])
    return out


__all__ = ["SpecError", "with_defaults", "spec_int", "spec_port", "spec_label", "parse_memory",
           "format_memory", "spec_resources"]
