"""`--tags cluster` (and `nodes`) for real, up to the kubeadm/talosctl binary boundary.

* The sample inventories render and validate every artefact with kubeadm_apply/talos_apply
  false (nothing connects: ansible_connection=local, no host is touched), idempotently, and
  `--check --diff` changes nothing.
* Secrets files are 0600 in 0700 directories and their values never appear in the output.
* talos_apply=true on a controller without talosctl stops at the first talosctl call with a
  message naming it, after rendering; nothing pretends to have generated secrets.
* kubeadm on booted lab nodes (lab `kfclu`, 10.83.0.0/24, always torn down): node preparation
  and every kubeadm file are put in place over real SSH, then the run stops at the first call
  needing kubeadm with a message naming it; nothing pretends the node joined.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import yaml

import ansible_runner  # noqa: E402

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_talos
from labrunner import REFERENCE, REPO, VENV_BIN, host_summary, output, run_playbook  # noqa: E402

# PATH without any talosctl/kubeadm: the venv and the system directories only.
ENV = {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
       "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
       "ANSIBLE_FORCE_COLOR": "0",
       "PATH": "%s:/usr/sbin:/usr/bin:/sbin:/bin" % VENV_BIN}
LOCAL = {"ansible_connection": "local"}


def run_local(inventory, render_dir, extravars=None, check=False):
    pdd = tempfile.mkdtemp(prefix="kf-cluster-runner-")
    try:
        runner = ansible_runner.run(
            private_data_dir=pdd, playbook=str(REPO / "site.yml"),
            inventory=str((REPO / inventory).resolve()), tags="cluster",
            cmdline="--check --diff" if check else None,
            extravars=dict(LOCAL, kubeflat_render_dir=str(render_dir), **(extravars or {})),
            envvars=ENV, quiet=True, timeout=600)
        runner.text = output(runner)
        runner.summary = host_summary(runner)
    finally:
        shutil.rmtree(pdd, ignore_errors=True)
    return runner


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def changed_total(runner):
    return sum(s["changed"] for s in runner.summary.values())


def secret_values(secrets_file):
    data = yaml.safe_load(Path(secrets_file).read_text())
    key_lines = [l for l in data["ca_key"].splitlines() if l and not l.startswith("-----")]
    return [data["token"], data["certificate_key"], data["token"].split(".")[1]] + key_lines[:3]


@pytest.fixture(scope="module")
def kubeadm_render(tmp_path_factory):
    render = tmp_path_factory.mktemp("kubeadm-render")
    first = run_local("inventories/sample", render, {"kubeadm_apply": False})
    return render, first


def test_kubeadm_sample_renders_and_validates(kubeadm_render):
    render, run = kubeadm_render
    assert run.rc == 0, run.text[-3000:]
    assert "kubeadm_apply is false" in run.text and "nothing was applied" in run.text
    base = render / "kubeadm"
    assert mode(base) == 0o700 and mode(base / "secrets.yml") == 0o600
    # envoy --mode validate and kubernetes-validate ran in the role, on the rendered files
    assert "Validate the load balancer config with envoy --mode validate" in run.text
    assert "Validate the load balancer static pod with kubernetes-validate" in run.text
    hosts = yaml.safe_load((REPO / "inventories/sample/hosts.yml").read_text())
    cps = hosts["all"]["children"]["k8s_cluster"]["children"]["kube_control_plane"]["hosts"]
    for node in ["cp1", "cp2", "cp3", "w1", "w2", "w3"]:
        cfg = base / "nodes" / node / "kubeadm.yaml"
        assert mode(cfg) == 0o600
        docs = list(yaml.safe_load_all(cfg.read_text()))
        kinds = [d["kind"] for d in docs]
        if node == "cp1":
            assert kinds == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
            by = {d["kind"]: d for d in docs}
            # Cilium KPR; kubeflat's CoreDNS DaemonSet on the control-plane addresses
            assert by["InitConfiguration"]["skipPhases"] == ["addon/kube-proxy", "addon/coredns"]
            assert by["KubeletConfiguration"]["clusterDNS"] == [
                hosts["all"]["children"]["k8s_cluster"]["children"]["kube_control_plane"][
                    "hosts"][cp]["ansible_host"] for cp in sorted(cps)][:3]
            assert by["ClusterConfiguration"]["networking"]["podSubnet"] == "10.244.0.0/16"
            assert by["ClusterConfiguration"]["controlPlaneEndpoint"] == "127.0.0.1:7443"
        else:
            assert kinds == ["JoinConfiguration"]
            assert ("controlPlane" in docs[0]) == (node in cps)
        patch = yaml.safe_load((base / "nodes" / node / "patches" /
                                "kubeletconfiguration+strategic.yaml").read_text())
        assert patch["systemReserved"] == {"cpu": "2", "memory": "6Gi"}
    envoy = yaml.safe_load((base / "apiserver-lb" / "envoy.yaml").read_text())
    eps = envoy["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in eps] == [
        "192.168.10.11", "192.168.10.12", "192.168.10.13"]


def test_kubeadm_secrets_never_printed(kubeadm_render):
    render, run = kubeadm_render
    for value in secret_values(render / "kubeadm" / "secrets.yml"):
        assert value not in run.text


def test_kubeadm_render_is_idempotent_and_check_mode_changes_nothing(kubeadm_render):
    render, _ = kubeadm_render
    before = {p: p.read_bytes() for p in (render / "kubeadm").rglob("*") if p.is_file()}
    again = run_local("inventories/sample", render, {"kubeadm_apply": False})
    assert again.rc == 0 and changed_total(again) == 0, again.summary
    check = run_local("inventories/sample", render, {"kubeadm_apply": False}, check=True)
    assert check.rc == 0 and changed_total(check) == 0, check.summary
    after = {p: p.read_bytes() for p in (render / "kubeadm").rglob("*") if p.is_file()}
    assert after == before


def test_kubeadm_bad_reservation_is_refused_before_anything_is_written(tmp_path):
    run = run_local("inventories/sample", tmp_path, {"kubeadm_apply": False,
                                                      "kubeadm_kubelet_system_reserved": {"cpu": "lots"}})
    assert run.rc != 0
    assert "kubeadm_kubelet_system_reserved.cpu" in run.text
    assert not list((tmp_path / "kubeadm" / "nodes").rglob("kubeletconfiguration*"))


@pytest.fixture(scope="module")
def talos_render(tmp_path_factory):
    render = tmp_path_factory.mktemp("talos-render")
    schema = REFERENCE / "talos" / "v1.12" / "config.schema.json"
    run = run_local("inventories/sample-talos", render,
                    {"talos_apply": False, "talos_schema_path": str(schema)})
    return render, run, schema


def test_talos_sample_renders_and_validates(talos_render):
    render, run, schema = talos_render
    assert run.rc == 0, run.text[-3000:]
    assert "all 8 Talos patches valid against" in run.text
    assert "talosctl was not called" in run.text
    base = render / "talos"
    docs = list(yaml.safe_load_all((base / "patches" / "common.yaml").read_text()))
    docs += list(yaml.safe_load_all((base / "patches" / "controlplane.yaml").read_text()))
    for node in ["cp1", "cp2", "cp3", "w1", "w2", "w3"]:
        docs += list(yaml.safe_load_all((base / "patches" / "nodes" / ("%s.yaml" % node)).read_text()))
    assert kubeflat_talos.validate_documents(docs, json.loads(schema.read_text())) == []
    w3 = list(yaml.safe_load_all((base / "patches" / "nodes" / "w3.yaml").read_text()))
    link = [d for d in w3 if d.get("kind") == "LinkConfig"][0]
    assert link["name"] == "enp1s0"  # per-host talos_interface
    plan = (base / "plan.txt").read_text().splitlines()
    cmds = [l for l in plan if l.startswith("talosctl")]
    assert cmds[0].startswith("talosctl gen secrets --output-file %s/secrets.yaml" % base)
    assert sum(1 for c in cmds if c.startswith("talosctl apply-config --insecure")) == 6
    assert sum(1 for c in cmds if " bootstrap " in c) == 1
    assert not (base / "secrets.yaml").exists()


def test_talos_stops_at_talosctl_and_fakes_nothing(tmp_path):
    # talos_secrets as if from ansible-vault: its value must never be printed either.
    secret = "kubeflat-test-secret-value-3141592653"
    run = run_local("inventories/sample-talos", tmp_path,
                    {"talos_apply": True, "talos_schema_path": "",
                     "talos_secrets": {"cluster": {"id": "x", "secret": secret}}})
    assert run.rc != 0
    assert "talosctl is not available on the controller" in run.text
    assert "Install talosctl v1.12.x" in run.text
    assert secret not in run.text
    assert (tmp_path / "talos" / "plan.txt").exists()  # rendered before the boundary
    # The talosctl probe is the first step of apply: no secrets bundle, no machine config.
    assert not (tmp_path / "talos" / "secrets.yaml").exists()
    assert not list((tmp_path / "talos" / "nodes").iterdir())


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from lab import Lab
    lab = Lab(REPO / "tests/integration/inventories/cluster", quiet=True)
    try:
        lab.up(fresh=True)
        # Bounded wait until every node accepts SSH (seen refusing once right after up()).
        import time
        deadline = time.monotonic() + 60
        for name in ("cp1", "w1"):
            while lab.ssh(name, "true", timeout=15).returncode != 0:
                assert time.monotonic() < deadline, "lab node %s never accepted SSH" % name
                time.sleep(1)
        yield lab
    finally:
        lab.down()


def test_kubeadm_on_lab_nodes_stops_at_the_kubeadm_binary(lab, tmp_path):
    runner = run_playbook(lab, "site.yml", tags=["nodes", "cluster"],
                          extravars={"kubeflat_render_dir": str(tmp_path)}, timeout=600)
    text = output(runner)
    summary = host_summary(runner)
    assert runner.rc != 0
    for node in ("cp1", "w1"):
        assert summary[node]["failures"] == 1 and summary[node]["dark"] == 0, summary
    assert "kubeadm is not installed on cp1" in text and "kubeadm is not installed on w1" in text
    assert "needed for 'kubeadm init'" in text and "needed for 'kubeadm join'" in text
    for value in secret_values(tmp_path / "kubeadm" / "secrets.yml"):
        assert value not in text
    # Everything up to the boundary is really on the nodes, with private modes.
    check = lab.ssh("cp1", "stat -c '%a %n' /etc/kubernetes/kubeflat/kubeadm.yaml "
                           "/etc/kubernetes/pki/ca.key /etc/kubernetes/manifests/kubeflat-apiserver-lb.yaml",
                    check=True).stdout.split("\n")
    assert check[0] == "600 /etc/kubernetes/kubeflat/kubeadm.yaml"
    assert check[1] == "600 /etc/kubernetes/pki/ca.key"
    assert check[2] == "644 /etc/kubernetes/manifests/kubeflat-apiserver-lb.yaml"
    node_cfg = lab.ssh("w1", "cat /etc/kubernetes/kubeflat/kubeadm.yaml", check=True).stdout
    assert node_cfg == (tmp_path / "kubeadm" / "nodes" / "w1" / "kubeadm.yaml").read_text()
    patch = yaml.safe_load(lab.ssh("w1", "cat /etc/kubernetes/kubeflat/patches/"
                                         "kubeletconfiguration+strategic.yaml", check=True).stdout)
    assert patch["systemReserved"] == {"cpu": "1", "memory": "2Gi"}
    # The real containerd on the node accepted node_prep's configuration.
    assert "SystemdCgroup = true" in lab.ssh("w1", "containerd config dump", check=True).stdout
    # Nothing pretends the node joined.
    assert lab.ssh("w1", "test -e /etc/kubernetes/kubelet.conf").returncode != 0


def test_package_install_stops_naming_the_unreachable_repository(lab, tmp_path):
    # Lab nodes have no route to the internet (and no DNS): the pinned install must stop with
    # the repository and the air-gapped alternative named, not pretend. The repository is the
    # lab router's address on a closed port, so the failure is immediate instead of a DNS wait.
    repo = "https://10.83.0.1:9/core:/stable:"
    runner = run_playbook(lab, "site.yml", tags="nodes", limit="w1", timeout=300,
                          extravars={"kubeflat_render_dir": str(tmp_path),
                                     "node_prep_install_kubernetes_packages": True,
                                     "node_prep_kubernetes_repo_base": repo})
    text = output(runner)
    assert runner.rc != 0
    assert "Could not install kubelet, kubeadm, kubectl 1.37.0 from" in text
    assert repo + "/v1.37/deb/" in text
    assert "node_prep_kubernetes_package_source=directory" in text
    assert lab.ssh("w1", "command -v kubelet").returncode != 0
