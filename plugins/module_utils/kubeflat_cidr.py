# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CIDR maths for kubeflat: the one place where networks are parsed, compared and split.

Pure functions over the standard library ``ipaddress`` module. Every function that refuses an
input raises :class:`CidrError` with the variable name and the offending value in the message,
so callers (the cluster model, the route module, filters) can pass it straight to the user.
"""

from __future__ import absolute_import, division, print_function

try:
    from ansible.module_utils.kubeflat_errors import InputError
except ImportError:  # unit tests and controller-side plugins import it directly
    from kubeflat_errors import InputError  # type: ignore

import ipaddress

__metaclass__ = type


class CidrError(InputError):
    """An address or network that cannot be used; the message names the variable."""


def parse_network(value, var, strict=True):
    """Parse an IPv4 network in CIDR notation.

    With ``strict`` (the default) host bits must be zero: ``10.0.0.1/24`` is refused because
    the user almost certainly meant something else, and routes are keyed on the network.
    """
    if not isinstance(value, str) or "/" not in value:
        raise CidrError(var, value, "not a CIDR (expected a.b.c.d/len)")
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise CidrError(var, value, "invalid CIDR (%s)" % exc)
    if net.version != 4:
        raise CidrError(var, value, "only IPv4 is supported")
    if strict and net.network_address != ipaddress.ip_interface(value.strip()).ip:
        raise CidrError(var, value, "host bits set (did you mean %s?)" % net)
    return net


def parse_address(value, var):
    """Parse a single IPv4 address."""
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise CidrError(var, value, "not an IPv4 address")
    if addr.version != 4:
        raise CidrError(var, value, "only IPv4 is supported")
    return addr


def overlaps(a, b):
    """True when two networks share at least one address."""
    return a.overlaps(b)


def first_overlap(net, others):
    """Return the first ``(name, network)`` in ``others`` that overlaps ``net``, or None."""
    for name, other in others:
        if net.overlaps(other):
            return name, other
    return None


def subnet_count(parent, prefix):
    """How many /prefix subnets fit in parent."""
    if prefix < parent.prefixlen:
        return 0
    return 2 ** (prefix - parent.prefixlen)


def nth_subnet(parent, prefix, index):
    """The index-th /prefix subnet of parent (0-based), without enumerating the others."""
    size = 2 ** (32 - prefix)
    base = int(parent.network_address) + index * size
    return ipaddress.ip_network("%s/%d" % (ipaddress.ip_address(base), prefix))


def subnet_index(parent, prefix, subnet):
    """Inverse of :func:`nth_subnet`."""
    return (int(subnet.network_address) - int(parent.network_address)) // (2 ** (32 - prefix))


def network_containing(address, networks):
    """The first network of ``networks`` (iterable of ip_network) that contains ``address``."""
    for net in networks:
        if address in net:
            return net
    return None


def gateway_address(net, offset=1):
    """The offset-th host address of a network (offset 1 = the conventional router)."""
    return ipaddress.ip_address(int(net.network_address) + offset)
