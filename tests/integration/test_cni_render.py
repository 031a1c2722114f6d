"""`--tags network` for real: flannel host-gw and Cilium native routing rendered from the
sample and lab inventories and validated with the real checkers, and the CNI node checks run
on booted lab nodes over SSH (one passing run, and failing runs with a clear cause and fix).

Rendering-only inventories (no machines behind them) run with ansible_connection=local and
cni_checks_node=false, so nothing leaves the controller. The lab part needs root; it brings up
its own two-node lab (name `kfcni`, 10.81.0.0/24) and always tears it down.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

import ansible_runner  # noqa: E402

from labrunner import (REFERENCE, REPO, VENV_BIN, assert_run_ok, host_summary,  # noqa: E402
                       output, run_playbook)

ENV = {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
       "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
       "ANSIBLE_FORCE_COLOR": "0",
       "PATH": "%s:%s" % (VENV_BIN, os.environ.get("PATH", "/usr/bin:/bin"))}
LOCAL = {"ansible_connection": "local", "cni_checks_node": False}
CILIUM_SCHEMA = REFERENCE / "cilium" / "v1.19.2" / "values.schema.json"


def run_local(inventory, render_dir, extravars=None, check=False):
    """site.yml --tags network against an inventory without machines (nothing connects)."""
    pdd = tempfile.mkdtemp(prefix="kf-cni-runner-")
    runner = ansible_runner.run(
        private_data_dir=pdd, playbook=str(REPO / "site.yml"),
        inventory=str(Path(inventory).resolve()), tags="network",
        cmdline="--check --diff" if check else None,
        extravars=dict(LOCAL, kubeflat_render_dir=str(render_dir), **(extravars or {})),
        envvars=ENV, quiet=True, timeout=600)
    runner.text = output(runner)
    runner.summary = host_summary(runner)
    shutil.rmtree(pdd, ignore_errors=True)
    return runner


def changed_total(runner):
    return sum(s["changed"] for s in runner.summary.values())


def kubernetes_validate(path):
    out = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "-k", "1.37.0", "--strict",
                          str(path)], capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def inventory_vars(inventory):
    merged = {}
    for path in sorted((Path(inventory) / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


# (inventory, extra vars, CNI, re-run for idempotence). Each ansible run costs seconds on a
# loaded 2-core CI machine, so the idempotence and check-mode re-runs are done once per CNI.
CASES = [
    ("inventories/sample", {}, "cilium", True),
    ("inventories/sample-flannel", {}, "flannel", True),
    ("inventories/lab", {"kubeflat_cni": "flannel"}, "flannel", False),
    ("inventories/lab", {"kubeflat_cni": "cilium"}, "cilium", False),
]


@pytest.mark.parametrize("inventory,extra,cni,rerun", CASES,
                         ids=["sample-cilium", "sample-flannel", "lab-inv-flannel",
                              "lab-inv-cilium"])
def test_tags_network_renders_valid_cni_and_is_idempotent(tmp_path, inventory, extra, cni,
                                                          rerun):
    inv = REPO / inventory
    pod_cidr = extra.get("kubeflat_pod_cidr", inventory_vars(inv)["kubeflat_pod_cidr"])
    runner = run_local(inv, tmp_path, extra)
    assert runner.rc == 0, runner.text[-4000:]
    assert changed_total(runner) > 0
    out = tmp_path / "network"
    if cni == "flannel":
        assert sorted(os.listdir(out)) == ["kube-flannel.yml"]
        assert kubernetes_validate(out / "kube-flannel.yml").count("passed") == 6
        docs = list(yaml.safe_load_all((out / "kube-flannel.yml").read_text()))
        cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
        net_conf = json.loads(cm["data"]["net-conf.json"])
        assert net_conf["Network"] == pod_cidr and net_conf["Backend"]["Type"] == "host-gw"
        assert "NOT applied: no kubeconfig" in runner.text
    else:
        values = yaml.safe_load((out / "cilium-values.yaml").read_text())
        jsonschema.validate(values, json.loads(CILIUM_SCHEMA.read_text()))
        assert values["routingMode"] == "native" and values["autoDirectNodeRoutes"] is True
        assert values["ipv4NativeRoutingCIDR"] == pod_cidr
        assert values["kubeProxyReplacement"] is True
        script = (out / "cilium-install.sh").read_text()
        assert ("helm upgrade --install cilium cilium/cilium --version 1.19.2 --namespace "
                "kube-system --values %s" % (out / "cilium-values.yaml")) in script
        assert "was NOT installed: helm not found" in runner.text
        if (out / "cilium-lb-ipam.yml").exists():
            kinds = [d["kind"] for d in yaml.safe_load_all((out / "cilium-lb-ipam.yml").read_text())]
            assert kinds == ["CiliumLoadBalancerIPPool", "CiliumL2AnnouncementPolicy"]
    if not rerun:
        return
    again = run_local(inv, tmp_path, extra)
    assert again.rc == 0 and changed_total(again) == 0, again.text[-4000:]
    if cni == "cilium":
        dry = run_local(inv, tmp_path, extra, check=True)
        assert dry.rc == 0 and changed_total(dry) == 0, dry.text[-4000:]
    else:
        # --check --diff with a changed option: shows the change, writes nothing
        before = (out / "kube-flannel.yml").read_text()
        dry = run_local(inv, tmp_path, dict(extra, cni_flannel_ip_masq="true"),
                        check=True)
        assert dry.rc == 0 and changed_total(dry) == 1, dry.text[-4000:]
        assert "+++ after: %s/network/kube-flannel.yml" % tmp_path in dry.text
        assert "+        - --ip-masq" in dry.text, dry.text[-3000:]
        assert (out / "kube-flannel.yml").read_text() == before


def test_asking_to_install_cilium_without_helm_fails_naming_helm(tmp_path):
    runner = run_local(REPO / "inventories/sample", tmp_path,
                       {"cni_cilium_install": "always", "cni_cilium_helm_binary": "helm-absent"})
    assert runner.rc != 0
    assert "helm was not found on the controller (cni_cilium_helm_binary=helm-absent)" \
        in runner.text
    # the values were still rendered before stopping
    assert (tmp_path / "network" / "cilium-values.yaml").exists()


def test_bad_lb_pool_is_refused_before_anything_is_written(tmp_path):
    pools = [{"name": "bad", "blocks": [{"cidr": "192.168.10.0/28"}]}]  # holds cp1 .11
    runner = run_local(REPO / "inventories/sample", tmp_path,
                       {"cni_cilium_lb_ipam_pools": pools})
    assert runner.rc != 0
    assert "cni_cilium_lb_ipam_pools[0].blocks[0]" in runner.text
    assert "contains the address 192.168.10.11 of host cp1" in runner.text
    assert not (tmp_path / "network").exists()


def test_preflight_refuses_host_gw_across_l2_segments(tmp_path):
    inv = tmp_path / "inv"
    shutil.copytree(REPO / "inventories/sample-flannel", inv,
                    ignore=shutil.ignore_patterns("rendered"))
    hosts = (inv / "hosts.yml").read_text().replace("192.168.20.23", "192.168.30.23")
    (inv / "hosts.yml").write_text(hosts)
    (inv / "group_vars" / "all" / "zz-segments.yml").write_text(
        "kubeflat_host_networks: [192.168.20.0/24, 192.168.30.0/24]\n")
    runner = run_local(inv, tmp_path / "r")
    assert runner.rc != 0
    assert "flannel host-gw needs every node on one L2 segment" in runner.text
    assert "w3" in runner.text
    assert not (tmp_path / "r").exists()


def test_talos_nodes_are_never_contacted(tmp_path):
    """Talos nodes have no SSH: every host points at a closed loopback port, so any attempt to
    connect would make it unreachable. The stage must render Cilium and skip node checks."""
    import re
    inv = tmp_path / "inv"
    shutil.copytree(REPO / "inventories/sample", inv, ignore=shutil.ignore_patterns("rendered"))
    hosts = re.sub(r"ansible_host: (192\.168\.10\.\d+)",
                   r"kubeflat_node_address: \1, ansible_host: 127.0.0.1, ansible_port: 9",
                   (inv / "hosts.yml").read_text())
    (inv / "hosts.yml").write_text(hosts)
    (inv / "group_vars" / "all" / "zz-talos.yml").write_text("kubeflat_distribution: talos\n")
    pdd = tempfile.mkdtemp(prefix="kf-cni-runner-")
    try:
        runner = ansible_runner.run(
            private_data_dir=pdd, playbook=str(REPO / "site.yml"), inventory=str(inv),
            tags="network", extravars={"kubeflat_render_dir": str(tmp_path / "r")},
            envvars=ENV, quiet=True, timeout=600)
        text = output(runner)
        summary = host_summary(runner)
    finally:
        shutil.rmtree(pdd, ignore_errors=True)
    assert runner.rc == 0, text[-4000:]
    assert not [h for h, s in summary.items() if s["dark"] or s["failures"]], summary
    assert "Talos nodes have no shell" in text
    values = yaml.safe_load((tmp_path / "r" / "network" / "cilium-values.yaml").read_text())
    assert values["cgroup"] == {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("192.168.10.11", 6443)


# --- real lab nodes ----------------------------------------------------------------------

LAB_HOSTS = {"cp1": "10.81.0.11", "w1": "10.81.0.21"}


def write_lab_inventory(root: Path) -> Path:
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    (root / "hosts.yml").write_text(textwrap.dedent("""\
        all:
          children:
            k8s_cluster:
              children:
                kube_control_plane:
                  hosts:
                    cp1: {ansible_host: 10.81.0.11}
                kube_node:
                  hosts:
                    w1: {ansible_host: 10.81.0.21}
        """))
    (root / "group_vars" / "all.yml").write_text(textwrap.dedent("""\
        ansible_user: root
        kubeflat_lab_name: kfcni
        kubeflat_cluster_name: kfcni
        kubeflat_distribution: none
        kubeflat_cni: flannel
        kubeflat_pod_cidr: 10.244.0.0/16
        kubeflat_service_cidr: 10.96.0.0/12
        kubeflat_host_networks: [10.81.0.0/24]
        """))
    return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from lab import Lab
    lab = Lab(write_lab_inventory(tmp_path_factory.mktemp("cni-inv")))
    try:
        lab.up()
        # What the nodes stage guarantees on real machines; set here so the pass case is
        # about the CNI checks only.
        for host in LAB_HOSTS:
            lab.ssh(host, "sysctl -qw net.ipv4.ip_forward=1 "
                          "net.bridge.bridge-nf-call-iptables=1", check=True, timeout=30)
        yield lab
    finally:
        lab.down()


def check_results(runner):
    """host -> {check name: result} from the kubeflat.cluster.cni_check task events."""
    out = {}
    for event in runner.events:
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and \
                data.get("task_action", "").endswith("kubeflat.cluster.cni_check"):
            out[data["host"]] = {c["name"]: c for c in data["res"].get("checks", [])}
    return out


def lab_run(lab, tmp_path, extravars=None, **kw):
    extra = dict({"kubeflat_render_dir": str(tmp_path)}, **(extravars or {}))
    runner = run_playbook(lab, "site.yml", tags="network", extravars=extra, **kw)
    runner.text = output(runner)
    return runner


def test_node_checks_pass_on_real_nodes(lab, tmp_path):
    runner = lab_run(lab, tmp_path)
    assert runner.rc == 0, runner.text[-4000:]
    results = check_results(runner)
    assert set(results) == set(LAB_HOSTS)
    for host, checks in results.items():
        assert all(c["ok"] for c in checks.values()), (host, checks)
        # no flannel has run on these nodes, so there is no subnet.env to compare yet
        assert set(checks) == {"cni_plugins", "cni_conflist", "br_netfilter", "ip_forward"}
        # Debian's containernetworking-plugins live in /usr/lib/cni
        assert "bridge in /usr/lib/cni" in checks["cni_plugins"]["detail"]
        # the lab kernel has br_netfilter built in (no modules): recognised, not loaded
        assert "bridge-nf-call-iptables=1" in checks["br_netfilter"]["detail"]
    assert (tmp_path / "network" / "kube-flannel.yml").exists()
    # the checks only read; re-rendering an unchanged model changes nothing on any host
    assert_run_ok(lab_run(lab, tmp_path), changed=0)


def test_second_conflist_fails_with_cause_and_fix(lab, tmp_path):
    conf = json.dumps({"cniVersion": "0.3.1", "name": "x", "plugins": [{"type": "bridge"}]})
    lab.ssh("w1", "mkdir -p /etc/cni/net.d && echo '%s' > /etc/cni/net.d/10-flannel.conflist"
                  " && echo '%s' > /etc/cni/net.d/05-stale.conflist" % (conf, conf), check=True)
    try:
        runner = lab_run(lab, tmp_path)
        assert runner.rc != 0
        summary = host_summary(runner)
        assert summary["w1"]["failures"] == 1 and summary["cp1"]["failures"] == 0, summary
        bad = check_results(runner)["w1"]["cni_conflist"]
        assert not bad["ok"]
        assert "2 CNI configs in /etc/cni/net.d (05-stale.conflist, 10-flannel.conflist)" \
            in bad["cause"]
        assert "pods would be wired by the wrong CNI" in bad["cause"]
        assert bad["fix"].startswith("remove (or move out of /etc/cni/net.d) "
                                     "/etc/cni/net.d/05-stale.conflist")
        assert "CNI checks failed on w1" in runner.text
    finally:
        lab.ssh("w1", "rm -f /etc/cni/net.d/05-stale.conflist /etc/cni/net.d/10-flannel.conflist",
                check=True)


def test_ip_forward_off_missing_plugins_and_stale_flannel_fail_clearly(lab, tmp_path):
    # a flannel left running with another Network (file as flanneld writes it)
    lab.ssh("w1", "sysctl -qw net.ipv4.ip_forward=0 && mkdir -p /run/flannel && printf "
                  "'FLANNEL_NETWORK=10.245.0.0/16\\nFLANNEL_SUBNET=10.245.3.1/24\\n"
                  "FLANNEL_MTU=1500\\nFLANNEL_IPMASQ=true\\n' > /run/flannel/subnet.env",
            check=True)
    try:
        runner = lab_run(lab, tmp_path, limit="w1",
                         extravars={"cni_checks_bin_dirs": ["/opt/cni/bin"]})
        assert runner.rc != 0
        checks = check_results(runner)["w1"]
        assert "ip_forward is 0" in checks["ip_forward"]["cause"]
        assert "sysctl -w net.ipv4.ip_forward=1" in checks["ip_forward"]["fix"]
        assert "bridge, host-local, loopback, portmap not found" in checks["cni_plugins"]["cause"]
        assert "/opt/cni/bin (missing)" in checks["cni_plugins"]["cause"]
        stale = checks["flannel_subnet_env"]
        assert "FLANNEL_NETWORK=10.245.0.0/16 but the cluster pod CIDR is 10.244.0.0/16" \
            in stale["cause"]
        assert "re-apply the rendered kube-flannel.yml" in stale["fix"]
    finally:
        lab.ssh("w1", "sysctl -qw net.ipv4.ip_forward=1; rm -rf /run/flannel", check=True)
