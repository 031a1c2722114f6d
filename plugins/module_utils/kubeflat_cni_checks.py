# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks that catch the classic CNI failures, as pure functions over gathered facts.

Every check returns ``{"name", "ok", "cause", "fix", "detail"}``: when ``ok`` is false,
``cause`` says what is wrong on which node and ``fix`` says what to do about it. Facts are
gathered elsewhere (module ``kubeflat.cluster.cni_check`` on nodes, ``k8s_info``/``kubectl`` on the
controller); nothing here touches a host.
"""

from __future__ import absolute_import, division, print_function

import ipaddress
import json

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cidr import CidrError, parse_network

__metaclass__ = type

CNIS = ("flannel", "cilium")
# Files a container runtime (containerd, CRI-O) loads from its CNI conf dir.
CONF_SUFFIXES = (".conf", ".conflist", ".json")
EXPECTED_CONFLIST = {"flannel": "10-flannel.conflist", "cilium": "05-cilium.conflist"}
# Host-provided plugins each CNI needs in the runtime's CNI bin dir. flannel's own binary is
# copied in by its init container; flannel delegates to bridge/host-local and chains portmap.
# Cilium's agent installs cilium-cni itself; the runtime still needs loopback.
REQUIRED_PLUGINS = {"flannel": ["bridge", "host-local", "loopback", "portmap"],
                    "cilium": ["loopback"]}
PLUGINS_FIX = ("install the CNI reference plugins: on Debian/Ubuntu `apt-get install "
               "containernetworking-plugins` (into /usr/lib/cni), elsewhere unpack the "
               "containernetworking/plugins release into /opt/cni/bin; and make the runtime's "
               "CNI bin dir list that directory (containerd: plugins.'io.containerd.grpc.v1.cri'"
               ".cni.bin_dir / bin_dirs)")


def result(name, ok, cause="", fix="", detail=""):
    """One check result."""
    return {"name": name, "ok": bool(ok), "cause": "" if ok else cause,
            "fix": "" if ok else fix, "detail": detail}


def requirements(cni, kube_proxy_replacement=False, required_plugins=None):
    """What a node needs for ``cni``: plugins, conflist name, br_netfilter, ip_forward."""
    if cni not in CNIS:
        raise ValueError("cni=%r: node checks exist for %s" % (cni, ", ".join(CNIS)))
    plugins = REQUIRED_PLUGINS[cni] if required_plugins is None else list(required_plugins)
    return {
        "plugins": sorted(set(plugins)),
        "conflist": EXPECTED_CONFLIST[cni],
        # bridged pod traffic must traverse iptables for kube-proxy; Cilium's KPR needs none.
        "br_netfilter": cni == "flannel" or not kube_proxy_replacement,
        "ip_forward": True,
    }


def check_cni_plugins(node, bin_dirs, listing, required):
    """Every required plugin is an executable file in at least one of ``bin_dirs``.

    ``listing`` maps each bin dir to the executable file names in it (None: dir missing).
    """
    found = {}
    for directory in bin_dirs:
        for name in listing.get(directory) or []:
            found.setdefault(name, directory)
    missing = [p for p in required if p not in found]
    where = ", ".join("%s (%s)" % (d, "missing" if listing.get(d) is None
                                   else "%d plugins" % len(listing.get(d)))
                      for d in bin_dirs)
    detail = ", ".join("%s in %s" % (p, found[p]) for p in required if p in found)
    return result("cni_plugins", not missing,
                  cause="%s: CNI plugin binaries %s not found in the CNI bin dirs %s; pods "
                        "will get no network (\"failed to find plugin ... in path\")"
                        % (node, ", ".join(missing), where),
                  fix=PLUGINS_FIX, detail=detail or where)


def check_conflists(node, conf_dir, files, expected, installed):
    """At most one CNI config before install, exactly ``expected`` after.

    ``files`` are the names in the CNI conf dir. The runtime loads the first file by name,
    so any other config silently wins over (or shadows) the CNI kubeflat installs.
    """
    confs = sorted(f for f in files if f.endswith(CONF_SUFFIXES))
    others = [f for f in confs if f != expected]
    if others:
        wins = confs[0] != expected
        return result(
            "cni_conflist", False,
            cause="%s: %d CNI configs in %s (%s); expected only %s. The runtime uses the "
                  "first by name (%s)%s" % (
                      node, len(confs), conf_dir, ", ".join(confs), expected, confs[0],
                      ", so pods would be wired by the wrong CNI" if wins else
                      " and the others confuse every later CNI change"),
            fix="remove (or move out of %s) %s, then restart the container runtime; leave "
                "only %s" % (conf_dir, ", ".join("%s/%s" % (conf_dir, f) for f in others),
                             expected),
            detail=", ".join(confs))
    if installed and not confs:
        return result("cni_conflist", False,
                      cause="%s: no CNI config in %s after install; the CNI's DaemonSet pod "
                            "on this node has not written %s" % (node, conf_dir, expected),
                      fix="check the CNI pod on this node: kubectl -n <namespace> get pods "
                          "-o wide --field-selector spec.nodeName=%s, and its init "
                          "container logs" % node,
                      detail="")
    return result("cni_conflist", True, detail=", ".join(confs) or "none yet")


def check_br_netfilter(node, facts, required):
    """br_netfilter present (loaded or built in) and bridge-nf-call-iptables = 1.

    ``facts``: ``sys_module`` (/sys/module/br_netfilter exists), ``proc_bridge``
    (/proc/sys/net/bridge exists), ``nf_call_iptables`` (its value as text, or None).
    """
    if not required:
        return result("br_netfilter", True, detail="not required")
    present = bool(facts.get("sys_module") or facts.get("proc_bridge"))
    how = "loaded or built in" if facts.get("sys_module") else "built in (/proc/sys/net/bridge)"
    if not present:
        return result("br_netfilter", False,
                      cause="%s: br_netfilter is neither loaded nor built in "
                            "(/sys/module/br_netfilter and /proc/sys/net/bridge are missing); "
                            "Service traffic between pods on one node bypasses iptables"
                            % node,
                      fix="modprobe br_netfilter and persist it in /etc/modules-load.d/"
                          "k8s.conf (kernels without module support need it built in)",
                      detail="missing")
    value = (facts.get("nf_call_iptables") or "").strip()
    if value != "1":
        return result("br_netfilter", False,
                      cause="%s: net.bridge.bridge-nf-call-iptables is %s, not 1 (br_netfilter "
                            "%s); bridged pod traffic skips kube-proxy's rules"
                            % (node, value or "unreadable", how),
                      fix="sysctl -w net.bridge.bridge-nf-call-iptables=1 and persist it in "
                          "/etc/sysctl.d/k8s.conf",
                      detail=how)
    return result("br_netfilter", True, detail="%s, bridge-nf-call-iptables=1" % how)


def check_ip_forward(node, value, required=True):
    """net.ipv4.ip_forward = 1 (``value`` as read from /proc, None if unreadable)."""
    text = (value or "").strip()
    if not required or text == "1":
        return result("ip_forward", True, detail="ip_forward=%s" % (text or "n/a"))
    return result("ip_forward", False,
                  cause="%s: net.ipv4.ip_forward is %s; the node will not route pod traffic "
                        "to other nodes or outside hosts" % (node, text or "unreadable"),
                  fix="sysctl -w net.ipv4.ip_forward=1 and persist it in "
                      "/etc/sysctl.d/k8s.conf (kubeflat's nodes stage does this)",
                  detail="ip_forward=%s" % (text or "unreadable"))


def _parse_cidr(value):
    try:
        return parse_network(value, "podCIDR")
    except CidrError:
        return None


def check_node_pod_cidrs(model, live_nodes=None):
    """Every node has a pod CIDR inside the cluster pod CIDR.

    Without ``live_nodes`` the model is checked; with ``live_nodes`` (a list of
    ``{"name", "pod_cidr"}`` from the API, ``pod_cidr`` None when unset) the cluster is.
    """
    cluster = _parse_cidr(model["pod_cidr"])
    source = "the cluster model" if live_nodes is None else "the API server"
    entries = ([{"name": n["name"], "pod_cidr": n.get("pod_cidr")} for n in model["nodes"]]
               if live_nodes is None else list(live_nodes))
    missing, outside = [], []
    for node in entries:
        net = _parse_cidr(node.get("pod_cidr")) if node.get("pod_cidr") else None
        if net is None:
            missing.append(node["name"])
        elif not net.subnet_of(cluster):
            outside.append("%s=%s" % (node["name"], net))
    if live_nodes is not None:
        known = {n["name"] for n in entries}
        absent = [n for n in model["node_names"] if n not in known]
    else:
        absent = []
    if missing or absent:
        return result("node_pod_cidrs", False,
                      cause="nodes without a pod CIDR (spec.podCIDR) in %s: %s; flannel "
                            "fails with \"pod cidr not assigned\" and pods get no IP"
                            % (source, ", ".join(missing + ["%s (not registered)" % a for a in absent])),
                      fix="a node that is not registered must join first (cluster stage); "
                          "for registered nodes let kubeflat set spec.podCIDR from the model "
                          "(cni_checks_assign_pod_cidrs: true with a kubeconfig), or run "
                          "kube-controller-manager with --allocate-node-cidrs=true "
                          "--cluster-cidr=%s --node-cidr-mask-size=%s and declare the "
                          "allocated CIDRs as kubeflat_node_pod_cidr"
                          % (model["pod_cidr"], model["node_pod_prefix"]))
    if outside:
        return result("node_pod_cidrs", False,
                      cause="node pod CIDRs outside the cluster pod CIDR %s in %s: %s"
                            % (model["pod_cidr"], source, ", ".join(outside)),
                      fix="make kube-controller-manager's --cluster-cidr equal "
                          "kubeflat_pod_cidr %s and re-create the affected nodes' podCIDR "
                          "(kubectl delete node NAME; restart its kubelet)" % model["pod_cidr"])
    if live_nodes is not None:
        expected = {n["name"]: n["pod_cidr"] for n in model["nodes"]}
        differ = ["%s has %s, the model %s" % (n["name"], n["pod_cidr"], expected[n["name"]])
                  for n in entries if n["name"] in expected and n.get("pod_cidr")
                  and str(_parse_cidr(n["pod_cidr"])) != expected[n["name"]]]
        if differ:
            return result("node_pod_cidrs", False,
                          cause="node spec.podCIDR differs from the cluster model: %s; pods "
                                "get addresses that outside hosts and peers route elsewhere"
                                % "; ".join(differ),
                          fix="declare the cluster's value as kubeflat_node_pod_cidr of each "
                              "listed node in the inventory (or delete and re-register the "
                              "node so kubeflat assigns the model's), and keep "
                              "kube-controller-manager's --allocate-node-cidrs=false")
    return result("node_pod_cidrs", True,
                  detail="%d nodes with pod CIDRs in %s (%s)" % (len(entries), model["pod_cidr"], source))


def pod_cidr_assignments(model, live_nodes):
    """Registered nodes of the model without spec.podCIDR -> [{"name", "pod_cidr"}] to set.

    kube-controller-manager does not allocate node CIDRs in kubeflat clusters
    (--allocate-node-cidrs=false): the model owns them, and the API allows setting
    spec.podCIDR once, from empty.
    """
    expected = {n["name"]: n["pod_cidr"] for n in model["nodes"]}
    return [{"name": n["name"], "pod_cidr": expected[n["name"]]}
            for n in live_nodes or [] if n["name"] in expected and not n.get("pod_cidr")]


def check_flannel_network(net_conf, pod_cidr, where="rendered net-conf.json"):
    """flannel's Network equals the cluster pod CIDR and the backend is host-gw.

    ``net_conf`` is the parsed net-conf.json (dict) or its text.
    """
    if isinstance(net_conf, str):
        try:
            net_conf = json.loads(net_conf)
        except ValueError as exc:
            return result("flannel_network", False,
                          cause="%s is not valid JSON (%s)" % (where, exc),
                          fix="re-render with --tags network and re-apply kube-flannel.yml")
    net_conf = net_conf or {}
    network = _parse_cidr(net_conf.get("Network"))
    cluster = _parse_cidr(pod_cidr)
    backend = (net_conf.get("Backend") or {}).get("Type")
    if network is None or network != cluster:
        return result("flannel_network", False,
                      cause="flannel Network in %s is %s but the cluster pod CIDR "
                            "(kubeflat_pod_cidr, kubeadm podSubnet / Talos podSubnets) is %s; "
                            "flannel would hand out addresses the cluster does not route"
                            % (where, net_conf.get("Network"), pod_cidr),
                      fix="render flannel from the cluster model (--tags network) and apply "
                          "it; never edit net-conf.json by hand")
    if backend != "host-gw":
        return result("flannel_network", False,
                      cause="flannel backend in %s is %r, not host-gw; pods would be wrapped "
                            "in an overlay instead of routed" % (where, backend),
                      fix="re-render with --tags network and re-apply kube-flannel.yml")
    return result("flannel_network", True, detail="Network %s, host-gw" % network)


def parse_subnet_env(text):
    """``KEY=VALUE`` lines of /run/flannel/subnet.env as a dict."""
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def check_subnet_env(node, text, pod_cidr, node_pod_cidr=None, ip_masq=None):
    """/run/flannel/subnet.env exists and agrees with the cluster (``text`` None: missing)."""
    fix_pod = ("check flanneld on this node: kubectl -n kube-flannel logs -l app=flannel "
               "--field-selector spec.nodeName=%s (usually \"pod cidr not assigned\" or "
               "cannot reach the API server)" % node)
    if text is None:
        return result("flannel_subnet_env", False,
                      cause="%s: /run/flannel/subnet.env is missing: flanneld has not started "
                            "on this node, so the flannel CNI plugin fails every pod with "
                            "\"open /run/flannel/subnet.env: no such file\"" % node,
                      fix=fix_pod)
    env = parse_subnet_env(text)
    problems = []
    network = _parse_cidr(env.get("FLANNEL_NETWORK", ""))
    if network is None or str(network) != str(_parse_cidr(pod_cidr)):
        problems.append("FLANNEL_NETWORK=%s but the cluster pod CIDR is %s"
                        % (env.get("FLANNEL_NETWORK"), pod_cidr))
    subnet = None
    try:
        subnet = ipaddress.ip_interface(env.get("FLANNEL_SUBNET", ""))
    except ValueError:
        problems.append("FLANNEL_SUBNET=%r is not an address/prefix" % env.get("FLANNEL_SUBNET"))
    if subnet is not None:
        if node_pod_cidr and str(subnet.network) != str(_parse_cidr(node_pod_cidr)):
            problems.append("FLANNEL_SUBNET=%s but the node's spec.podCIDR is %s"
                            % (env.get("FLANNEL_SUBNET"), node_pod_cidr))
        elif network is not None and not subnet.network.subnet_of(network):
            problems.append("FLANNEL_SUBNET=%s is outside FLANNEL_NETWORK"
                            % env.get("FLANNEL_SUBNET"))
    if ip_masq is not None and env.get("FLANNEL_IPMASQ", "").lower() != str(bool(ip_masq)).lower():
        problems.append("FLANNEL_IPMASQ=%s but cni_flannel_ip_masq is %s"
                        % (env.get("FLANNEL_IPMASQ"), ip_masq))
    if problems:
        return result("flannel_subnet_env", False,
                      cause="%s: /run/flannel/subnet.env disagrees with the cluster: %s"
                            % (node, "; ".join(problems)),
                      fix="re-apply the rendered kube-flannel.yml (--tags network with a "
                          "kubeconfig), then restart the flannel pod on this node: kubectl -n "
                          "kube-flannel delete pod -l app=flannel --field-selector "
                          "spec.nodeName=%s" % node)
    return result("flannel_subnet_env", True,
                  detail="subnet %s in %s" % (env.get("FLANNEL_SUBNET"),
                                              env.get("FLANNEL_NETWORK")))


def check_cilium_status(status, expect_kpr=True, where="cilium-dbg status"):
    """Cilium agent healthy and kube-proxy replacement active, from ``status -o json``.

    ``status`` is the parsed JSON (dict) or its text; None means the command failed.
    """
    fix_agent = ("look at the agent: kubectl -n kube-system logs ds/cilium -c cilium-agent; "
                 "kubectl -n kube-system get pods -l k8s-app=cilium -o wide")
    if status is None:
        return result("cilium_status", False,
                      cause="%s did not answer: no running Cilium agent reachable" % where,
                      fix=fix_agent)
    if isinstance(status, str):
        try:
            status = json.loads(status)
        except ValueError as exc:
            return result("cilium_status", False,
                          cause="%s output is not JSON (%s)" % (where, exc), fix=fix_agent)
    state = ((status.get("cilium") or {}).get("state") or "").strip()
    if state != "Ok":
        msg = (status.get("cilium") or {}).get("msg") or ""
        return result("cilium_status", False,
                      cause="Cilium agent state is %r%s" % (state or "unknown",
                                                            ": %s" % msg if msg else ""),
                      fix=fix_agent)
    mode = str((status.get("kube-proxy-replacement") or {}).get("mode") or "")
    active = mode in ("True", "Strict", "true")
    if expect_kpr and not active:
        return result("cilium_status", False,
                      cause="Cilium kube-proxy replacement is %r, not active, but the cluster "
                            "runs without kube-proxy: Services do not work"
                            % (mode or "unreported"),
                      fix="install Cilium with the rendered values (kubeProxyReplacement: "
                          "true, k8sServiceHost/k8sServicePort set) and restart the agents: "
                          "kubectl -n kube-system rollout restart ds/cilium")
    if not expect_kpr and active:
        return result("cilium_status", False,
                      cause="Cilium kube-proxy replacement is active but kube-proxy is "
                            "expected to run (kubeflat_kube_proxy_replacement: false)",
                      fix="re-install Cilium with the rendered values")
    return result("cilium_status", True, detail="state Ok, kube-proxy replacement %s" % mode)


def failures(results):
    """The failing results."""
    return [r for r in results if not r["ok"]]


def failure_message(results):
    """One readable message for all failing results ('' when all passed)."""
    bad = failures(results)
    return "\n".join("[%s] %s\n  fix: %s" % (r["name"], r["cause"], r["fix"]) for r in bad)
