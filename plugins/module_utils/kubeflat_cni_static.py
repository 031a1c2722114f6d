# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static CNI mode: the per-node CNI conflist, and running a conflist like a runtime does.

Pure functions. :func:`static_conflist` builds the conflist (as data) for the reference plugins
of Debian's ``containernetworking-plugins``: bridge (``cni0``, gateway, no masquerade) with
host-local IPAM on the node's pod CIDR, then portmap and loopback. :func:`plugin_config` gives
the stdin of the n-th plugin of a conflist for CNI ADD/DEL (name, cniVersion and prevResult
injected, as libcni does), so the ``kubeflat.cluster.cni_pod`` module can make real pods.
"""

from __future__ import absolute_import, division, print_function

import copy
import re

__metaclass__ = type

CNI_VERSION = "1.0.0"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


class CniError(ValueError):
    """Refused input: the message names the variable, the value and the reason."""


def static_conflist(model, node_name, bridge="cni0", network_name="kubeflat", mtu=0):
    """The CNI conflist for ``node_name`` in static mode, from the cluster model.

    ``ipMasq`` is false: pod traffic to other pods and to outside hosts keeps the pod's
    source address (the whole point of a flat network). ``mtu`` 0 lets the plugin choose.
    """
    if model.get("cni") != "static":
        raise CniError("kubeflat_cni=%r: the static conflist is only for cni=static"
                       % model.get("cni"))
    node = None
    for candidate in model.get("nodes") or []:
        if candidate["name"] == node_name:
            node = candidate
    if node is None:
        raise CniError("inventory_hostname=%r: not a cluster node in the model" % node_name)
    if not _NAME_RE.match(str(bridge)) or len(str(bridge)) > 15:
        raise CniError("cni_static_bridge=%r: not a valid interface name (max 15 chars)"
                       % bridge)
    if not _NAME_RE.match(str(network_name)):
        raise CniError("cni_static_network_name=%r: not a valid CNI network name" % network_name)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not (mtu == 0 or 576 <= mtu <= 9000):
        raise CniError("cni_static_mtu=%r: must be 0 (automatic) or 576..9000" % (mtu,))
    bridge_conf = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": node["pod_cidr"], "gateway": node["pod_gateway"]}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    if mtu:
        bridge_conf["mtu"] = mtu
    return {
        "cniVersion": CNI_VERSION,
        "name": network_name,
        "plugins": [
            bridge_conf,
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def plugin_config(conflist, index, prev_result=None):
    """Stdin for plugin ``index`` of a conflist: the plugin's own keys plus ``name``,
    ``cniVersion`` and (for every plugin after the first) ``prevResult``."""
    plugins = conflist.get("plugins") or []
    if not 0 <= index < len(plugins):
        raise CniError("conflist %r has no plugin #%d" % (conflist.get("name"), index))
    conf = copy.deepcopy(plugins[index])
    if "type" not in conf:
        raise CniError("conflist %r plugin #%d has no type" % (conflist.get("name"), index))
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist.get("cniVersion", CNI_VERSION)
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def pod_ipv4(result):
    """The pod's IPv4 address (without prefix) from a CNI result, or None."""
    interfaces = (result or {}).get("interfaces") or []
    for ip in (result or {}).get("ips") or []:
        address = ip.get("address", "")
        iface = ip.get("interface")
        if "." in address and (iface is None or (
                0 <= iface < len(interfaces) and interfaces[iface].get("sandbox"))):
            return address.split("/")[0]
    return None


def cni_env(command, container_id, netns, ifname, cni_path):
    """The CNI_* environment of one plugin call."""
    if command not in ("ADD", "DEL", "CHECK"):
        raise CniError("CNI_COMMAND=%r: must be ADD, DEL or CHECK" % command)
    if not _NAME_RE.match(str(container_id)):
        raise CniError("container id %r: letters, digits, '_', '.', '-' only" % container_id)
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
            "CNI_IFNAME": ifname, "CNI_PATH": cni_path}
