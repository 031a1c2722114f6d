# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What kubeflat owns on a host, in one place, and how remove-node / reset take it back.

Pure functions, no I/O. :func:`owned` takes the cluster model, a host name and the role
settings (role defaults overlaid by the host's variables, see plugins/filter/remove.py) and
lists everything kubeflat puts on that host:

===========================  ==================================================  ==========
who writes it                what                                                remove
===========================  ==================================================  ==========
outside_routes / cni_static  kubeflat routes (protocol 201), the ``ip -batch``    delete
                             boot file, rt_protos.d/kubeflat.conf, the boot unit
                             file and its enablement
cni_static                   the conflist, the ip_forward sysctl.d file, the     delete
                             CNI bridge, host-local's state of kubeflat's network
verify                       the test pod (netns ``kubeflat-verify``, made with  delete
                             the real CNI plugins), the transient peer unit
node_prep (kubeadm nodes)    modules-load.d/kubeflat.conf, sysctl.d/90-kubeflat  delete
                             .conf, /etc/crictl.yaml, certs.d/<registry>/hosts
                             .toml
node_prep (kubeadm nodes)    /etc/containerd/config.toml (replaces the file the  restore
                             distribution's containerd package ships)
kubeadm                      kubeadm.yaml, the kubelet patch, the API LB's Envoy  delete
                             config and static pod, the CA kubeflat pre-placed
===========================  ==================================================  ==========

"delete" items were created by kubeflat and are removed. "restore" items replaced a file
someone else (the distribution) owns: they are put back from the original kept under
:data:`BACKUP_DIR` when there is one; without it the file is left as it is and the report says
so (deleting a package's conffile would change how that package's service runs). Directories
are removed only when they are kubeflat's (their name contains ``kubeflat``, or a registry
directory under certs.d kubeflat made) and only when nothing else is left in them. Packages,
runtime sysctl values and kernel modules are not reverted (see docs/day2.md).

:func:`removal_items` turns the list into the arguments of one ``kubeflat.cluster.converge`` call;
:func:`model_without` is the model after a node leaves (every other node keeps its pod CIDR).
"""

from __future__ import absolute_import, division, print_function

import copy
import posixpath

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_items import BACKUP_DIR
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import (
    PERSIST_PATH, RT_PROTOS_PATH, UNIT_NAME, managed_host)

__metaclass__ = type

# playbooks/verify.yml's play vars (a unit test checks they agree).
VERIFY_POD = "kubeflat-verify"
VERIFY_UNIT = "kubeflat-verify-peer.service"
SYSTEMD_DIR = "/etc/systemd/system"
MAX_DNS_SERVERS = 3

# The role settings owned() reads, with the roles' defaults (the filter overlays the real role
# defaults files and the host's variables on these; a unit test checks they agree).
SETTINGS = {
    "cni_static_conf_dir": "/etc/cni/net.d",
    "cni_static_conflist_name": "10-kubeflat.conflist",
    "cni_static_sysctl_file": "/etc/sysctl.d/90-kubeflat-cni-static.conf",
    "cni_static_bridge": "cni0",
    "cni_static_network_name": "kubeflat",
    "cni_static_plugin_dir": "/usr/lib/cni",
    "outside_routes_persist_path": PERSIST_PATH,
    "outside_routes_unit_name": UNIT_NAME,
    "node_prep_registry_mirrors": [],
    "kubeadm_config_dir": "/etc/kubernetes/kubeflat",
}


class RemoveError(InputError):
    """A remove-node / reset request that must not run; names the variable and the value."""


def _item(path, how="delete", **extra):
    item = {"path": path, "how": how}
    item.update(extra)
    return item


def _kubeflat_dirs(paths):
    """Every ancestor directory of ``paths`` whose name is kubeflat's."""
    out = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            if "kubeflat" in posixpath.basename(parent):
                out.add(parent)
            parent = posixpath.dirname(parent)
    return out


def owned(model, host, settings=None):
    """Everything kubeflat puts on ``host`` (see the module docstring).

    Returns ``{"files": [{path, how, backup?}], "dirs": [...], "units": [...], "routes": bool,
    "verify_unit": str or None, "verify_pod": {name, conflist, cni_path} or None,
    "bridge": str or None, "kubeadm": bool}``; every list is sorted.
    """
    s = dict(SETTINGS)
    s.update({k: v for k, v in (settings or {}).items() if k in SETTINGS and v is not None})
    nodes = model.get("node_names") or []
    outside = [h["name"] for h in model.get("outside_hosts") or []]
    out = {"files": [], "dirs": [], "units": [], "routes": False, "verify_unit": None,
           "verify_pod": None, "bridge": None, "kubeadm": False}
    if host not in nodes and host not in outside:
        return out
    files = []
    extra_dirs = set()
    out["verify_unit"] = VERIFY_UNIT
    if managed_host(model, host):
        unit = "%s.service" % s["outside_routes_unit_name"]
        out["routes"] = True
        out["units"].append(unit)
        files += [_item(s["outside_routes_persist_path"]), _item(RT_PROTOS_PATH),
                  _item("%s/%s" % (SYSTEMD_DIR, unit))]
    if host in nodes and model.get("cni") == "static":
        conflist = posixpath.join(s["cni_static_conf_dir"], s["cni_static_conflist_name"])
        files += [_item(conflist), _item(s["cni_static_sysctl_file"])]
        ipam = "/var/lib/cni/networks/%s" % s["cni_static_network_name"]
        # host-local's bookkeeping of kubeflat's network (the addresses of live pods are
        # released by CNI DEL; these two remain after the last one).
        files += [_item(ipam + "/last_reserved_ip.0"), _item(ipam + "/lock")]
        extra_dirs.add(ipam)
        out["bridge"] = s["cni_static_bridge"]
        out["verify_pod"] = {"name": VERIFY_POD, "conflist": conflist,
                             "cni_path": s["cni_static_plugin_dir"]}
    if host in nodes and model.get("distribution") == "kubeadm":
        out["kubeadm"] = True
        files += [_item("/etc/modules-load.d/kubeflat.conf"),
                  _item("/etc/sysctl.d/90-kubeflat.conf"),
                  _item("/etc/crictl.yaml"),
                  _item("/etc/containerd/config.toml", "restore",
                        backup=BACKUP_DIR + "/etc/containerd/config.toml")]
        for mirror in s["node_prep_registry_mirrors"] or []:
            registry = "/etc/containerd/certs.d/%s" % mirror["registry"]
            files.append(_item(registry + "/hosts.toml"))
            extra_dirs.add(registry)
        cfg = s["kubeadm_config_dir"].rstrip("/")
        files += [_item(cfg + "/kubeadm.yaml"),
                  _item(cfg + "/patches/kubeletconfiguration+strategic.yaml"),
                  _item(cfg + "/apiserver-lb/envoy.yaml"),
                  _item("/etc/kubernetes/manifests/kubeflat-apiserver-lb.yaml")]
        extra_dirs |= {cfg, cfg + "/patches", cfg + "/apiserver-lb"}
        if (model.get("control_planes") or [None])[0] == host:
            files += [_item("/etc/kubernetes/pki/ca.crt"), _item("/etc/kubernetes/pki/ca.key")]
    backups = [f["backup"] for f in files if f.get("backup")]
    dirs = _kubeflat_dirs([f["path"] for f in files] + backups) | extra_dirs
    if backups:
        dirs |= {d for d in _ancestors(backups) if d.startswith("/var/lib/kubeflat")}
    out["files"] = sorted(files, key=lambda f: f["path"])
    out["dirs"] = sorted(dirs, key=lambda d: (-d.count("/"), d))
    out["units"].sort()
    return out


def _ancestors(paths):
    out = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            out.add(parent)
            parent = posixpath.dirname(parent)
    return out


def removal_items(items, backups=None):
    """``kubeflat.cluster.converge`` arguments that take back what :func:`owned` lists.

    ``backups`` maps a restore item's backup path to the original's content (text) when the
    host has it. Returns ``{"files", "dirs", "units", "routes", "left"}``; ``left`` are lines
    naming files that are left as they are, and why.
    """
    backups = backups or {}
    files, left = [], []
    for item in items["files"]:
        if item["how"] == "restore":
            original = backups.get(item["backup"])
            if original is None:
                left.append("%s is left as it is: kubeflat replaced the distribution's file and "
                            "no original was kept (%s is missing); reinstall the package's "
                            "version if you want it back" % (item["path"], item["backup"]))
                continue
            files.append({"path": item["path"], "content": original})
            files.append({"path": item["backup"], "state": "absent"})
        else:
            files.append({"path": item["path"], "state": "absent"})
    return {
        "files": files,
        "dirs": [{"path": d} for d in items["dirs"]],
        "units": [{"name": u, "enabled": False} for u in items["units"]],
        # Every kubeflat route goes; the boot file and protocol name are file items above.
        "routes": {"routes": [], "persist": False} if items["routes"] else None,
        "left": left,
    }


def removal_names(model, raw, var="node"):
    """The nodes a remove-node run takes out: ``raw`` is a name or a comma-separated list.

    Refused (naming ``var`` and the value) before anything changes: nothing given, a name that
    is no node of the inventory (an outside host is named as such), and removing every control
    plane (that is a reset).
    """
    if isinstance(raw, (list, tuple)):
        names = [str(n).strip() for n in raw]
    else:
        names = [n.strip() for n in str(raw or "").split(",")]
    names = [n for n in names if n]
    nodes = model.get("node_names") or []
    if not names:
        raise RemoveError(var, raw or "", "no node given: run playbooks/remove_node.yml -e "
                          "%s=<name> (nodes: %s)" % (var, ", ".join(nodes)))
    outside = [h["name"] for h in model.get("outside_hosts") or []]
    for name in names:
        if name in outside:
            raise RemoveError(var, name, "%s is an outside host (k8s_outside), not a cluster "
                              "node; remove-node removes nodes only" % name)
        if name not in nodes:
            raise RemoveError(var, name, "not a node of this inventory (nodes: %s)"
                              % ", ".join(nodes))
    cps = model.get("control_planes") or []
    if cps and all(cp in names for cp in cps):
        raise RemoveError(var, ",".join(names), "would remove every control plane (%s); use "
                          "playbooks/reset.yml to take the whole cluster down" % ", ".join(cps))
    return sorted(set(names), key=names.index)


def model_without(model, names):
    """The model once ``names`` have left: every other node keeps its pod CIDR and address.

    (Rebuilding the model from an inventory without them would re-allocate undeclared pod
    CIDRs and could move other nodes' pods; filtering the built model cannot.)
    """
    gone = set(names)
    out = copy.deepcopy(model)
    out["nodes"] = [n for n in model["nodes"] if n["name"] not in gone]
    out["node_names"] = [n for n in model["node_names"] if n not in gone]
    out["control_planes"] = [n for n in model.get("control_planes") or [] if n not in gone]
    out["workers"] = [n for n in model.get("workers") or [] if n not in gone]
    out["pod_routes"] = [r for r in model["pod_routes"] if r["node"] not in gone]
    out["segments"] = {net: [n for n in members if n not in gone]
                       for net, members in (model.get("segments") or {}).items()}
    out["non_adjacent_nodes"] = [n for n in model.get("non_adjacent_nodes") or []
                                 if n not in gone]
    gone_addresses = {n["address"] for n in model["nodes"] if n["name"] in gone}
    cp_addresses = [n["address"] for n in out["nodes"] if n["name"] in out["control_planes"]]
    if "apiserver" in out:
        port = out["apiserver"].get("port")
        out["apiserver"]["backends"] = ["%s:%s" % (a, port) for a in cp_addresses]
    if out.get("dns_mode") == "control_planes":
        out["cluster_dns"] = cp_addresses[:MAX_DNS_SERVERS]
    else:
        out["cluster_dns"] = [a for a in model.get("cluster_dns") or [] if a not in gone_addresses]
    return out


def unpinned_nodes(model, names):
    """Nodes that stay but whose pod CIDR was allocated (not declared), as ``name (cidr)``:
    deleting ``names`` from the inventory may re-allocate them, so pin them first."""
    return ["%s (%s)" % (n["name"], n["pod_cidr"]) for n in model["nodes"]
            if n["name"] not in names and n.get("pod_cidr_source") != "declared"]
