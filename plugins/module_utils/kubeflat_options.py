# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared checks for role option dictionaries (``<role>_<key>`` variables).

Builders keep their own error class (a subclass of kubeflat_errors.InputError) and pass it in,
so messages keep naming the role's variable: ``cni_flannel_iface=...: must be a list ...``.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

# host[:port][/path], no scheme and no trailing slash: what an image reference starts with.
REGISTRY_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*$")


def merge_options(options, defaults, prefix, error):
    """``defaults`` updated with the non-None ``options``; an unknown key is refused."""
    options = options or {}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise error(prefix + unknown[0], options[unknown[0]], "unknown option")
    merged = dict(defaults)
    merged.update({k: v for k, v in options.items() if v is not None})
    return merged


def check_bool(opts, key, prefix, error):
    """``opts[key]`` if it is a boolean."""
    if not isinstance(opts[key], bool):
        raise error(prefix + key, opts[key], "must be true or false")
    return opts[key]


def check_str_list(opts, key, prefix, error):
    """``opts[key]`` as a list of non-empty strings (None is the empty list)."""
    value = opts[key]
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise error(prefix + key, value, "must be a list of strings")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise error(prefix + key, value, "must be a list of non-empty strings")
    return list(value)


def valid_registry(value):
    """True for an empty string or a registry ``host[:port][/path]``."""
    return isinstance(value, str) and (not value or bool(REGISTRY_RE.match(value)))
