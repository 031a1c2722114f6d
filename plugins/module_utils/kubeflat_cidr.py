# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CIDR maths for kubeflat: the one place where networks are parsed, compared and split.

Pure functions over the standard library ``ipaddress`` module. Every function that refuses an
input raises :class:`CidrError` with the variable name and the offending value in the message,
so callers (the cluster model, the route module, filters) can pass it straight to the user.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

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


# --- IANA special-purpose ranges ------------------------------------------------------------
# From the IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its updates): the ranges
# that can never carry pod, service or node traffic, because hosts never send them (0/8,
# 240/4), never let them leave the host (127/8), routers must not forward them (169.254/16,
# 192.0.0.0/24), or they are not unicast (224/4, 255.255.255.255). Python's ipaddress knows
# most of them as facts (is_loopback, is_link_local, is_multicast, is_reserved); the unit tests
# check this table against those facts. Deliberately NOT refused, because on-prem pod and
# service networks legitimately use them: RFC 1918 (10/8, 172.16/12, 192.168/16), shared
# address space 100.64/10 (RFC 6598, forwardable, common for pod networks), benchmarking
# 198.18/15 (RFC 2544, forwardable, used by labs), the documentation ranges 192.0.2.0/24,
# 198.51.100.0/24 and 203.0.113.0/24 (RFC 5737: forwardable unicast, only "not on the public
# internet"; labs and examples use them), and public space (some sites own it).
UNUSABLE_NETWORKS = (
    ("0.0.0.0/8", '"this network" (RFC 791): a source address only while a host boots'),
    ("127.0.0.0/8", "loopback (RFC 1122): never leaves a host"),
    ("169.254.0.0/16", "link-local (RFC 3927): routers never forward it"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890): not forwardable"),
    ("224.0.0.0/4", "multicast (RFC 5771): not a unicast address"),
    ("240.0.0.0/4", "reserved (RFC 1112): hosts and routers drop it"),
    ("255.255.255.255/32", "the limited broadcast address (RFC 919)"),
)
_UNUSABLE = tuple((ipaddress.ip_network(net), reason) for net, reason in UNUSABLE_NETWORKS)


def special_purpose(net):
    """``(range, reason)`` of the special-purpose range ``net`` falls in or overlaps, or None.

    ``net`` is an IPv4Network or IPv4Address. A range that contains ``net`` wins (the most
    specific one), so 255.255.255.255 is named as the broadcast address, not as reserved.
    """
    if not isinstance(net, ipaddress.IPv4Network):
        net = ipaddress.ip_network(net)
    containing = [(rng, why) for rng, why in _UNUSABLE if net.subnet_of(rng)]
    if containing:
        return max(containing, key=lambda item: item[0].prefixlen)
    for rng, why in _UNUSABLE:
        if net.overlaps(rng):
            return rng, why
    return None


def check_usable(net, var, value=None):
    """Refuse a network or address inside or overlapping a special-purpose range."""
    found = special_purpose(net)
    if found:
        rng, why = found
        where = "is in" if ipaddress.ip_network(net).subnet_of(rng) else "overlaps"
        raise CidrError(var, str(net) if value is None else value,
                        "%s %s, %s; it cannot carry pod, service or node traffic"
                        % (where, rng, why))
    return net
