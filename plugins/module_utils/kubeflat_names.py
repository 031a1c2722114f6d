# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS names for kubeflat: the one place that says whether a name can be a DNS or object name.

Pure functions that return ``None`` for a valid name and otherwise the reason, so every caller
keeps its own error class and names its own variable (``InputError(var, value, reason)``).

* :func:`label_problem` -- an RFC 1123 label (Kubernetes ``DNS-1123 label``: Namespace names,
  the cluster name): lower case letters, digits and ``-``, alphanumeric at both ends, at most 63.
* :func:`name_problem` -- an RFC 1123 host/domain name (Kubernetes ``DNS-1123 subdomain`` with
  the DNS limits on top): dot-separated labels of at most 63, at most 253 in all, no empty label,
  no trailing dot. Node names, the cluster domain, API endpoint hosts and certificate SANs.

Upper case is refused rather than folded: Kubernetes refuses upper-case object names, and a
name that only works after the tool lower-cases it is a surprise elsewhere (kubeconfig, SANs).
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

LABEL_MAX = 63
NAME_MAX = 253
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def label_problem(value, max_len=LABEL_MAX):
    """Why ``value`` is not an RFC 1123 label of at most ``max_len`` characters, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty DNS label"
    if len(value) > max_len:
        return "longer than %d characters (a DNS label)" % max_len
    if value != value.lower() and _LABEL.match(value.lower()):
        return "must be lower case (a DNS label; did you mean %s?)" % value.lower()
    if not _LABEL.match(value):
        return ("must be a DNS label: lower case letters, digits and '-', starting and ending "
                "with a letter or digit")
    return None


def name_problem(value, wildcard=False):
    """Why ``value`` is not an RFC 1123 DNS name, or None.

    With ``wildcard``, a leading ``*.`` label is accepted (certificate SANs, ingress hosts).
    """
    if not isinstance(value, str) or not value:
        return "must be a non-empty DNS name"
    if value.endswith("."):
        return "must not end with a dot (did you mean %s?)" % value.rstrip(".")
    if len(value) > NAME_MAX:
        return "longer than %d characters (a DNS name)" % NAME_MAX
    if value != value.lower() and name_problem(value.lower(), wildcard) is None:
        return "must be lower case (did you mean %s?)" % value.lower()
    labels = value.split(".")
    if wildcard and len(labels) > 1 and labels[0] == "*":
        labels = labels[1:]
    for label in labels:
        if not label:
            return "has an empty label (two dots in a row or a leading dot)"
        reason = label_problem(label)
        if reason:
            return "label %r %s" % (label, reason.replace(" (a DNS label)", ""))
    return None
