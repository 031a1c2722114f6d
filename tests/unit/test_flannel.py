"""Unit tests for plugins/module_utils/kubeflat_flannel.py: the manifest as data.

Compared structurally with the upstream kube-flannel.yml in ../shared/reference and validated
with kubernetes-validate --strict for Kubernetes 1.37.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from cni_fixtures import REFERENCE, model
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cni_checks import check_flannel_network
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_flannel import (
    DEFAULTS, FlannelError, build_manifest, flanneld_args, manifest_net_conf, net_conf,
    validate_options)

UPSTREAM = os.path.join(REFERENCE, "flannel", "kube-flannel.yml")


def upstream():
    with open(UPSTREAM) as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def by_key(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def pod_spec(objects):
    return by_key(objects)[("DaemonSet", "kube-flannel-ds")]["spec"]["template"]["spec"]


def test_net_conf_uses_pod_cidr_and_host_gw():
    conf = net_conf(model(pod_cidr="10.32.0.0/16"))
    assert conf == {"Network": "10.32.0.0/16", "EnableNFTables": False,
                    "Backend": {"Type": "host-gw"}}


def test_manifest_net_conf_agrees_with_the_model_pod_subnet():
    m = model(pod_cidr="172.20.0.0/16", node_pod_prefix=24)
    objects = build_manifest(m)
    assert manifest_net_conf(objects)["Network"] == m["pod_cidr"]
    assert check_flannel_network(manifest_net_conf(objects), m["pod_cidr"])["ok"]


def test_no_upstream_object_is_lost():
    ours = by_key(build_manifest(model()))
    for key, obj in by_key(upstream()).items():
        assert key in ours, "object %s/%s lost" % key
        assert ours[key]["apiVersion"] == obj["apiVersion"]
        assert ours[key]["metadata"].get("namespace") == obj["metadata"].get("namespace")
        for label, value in obj["metadata"].get("labels", {}).items():
            assert ours[key]["metadata"]["labels"].get(label) == value


def test_rbac_rules_and_binding_match_upstream():
    ours, theirs = by_key(build_manifest(model())), by_key(upstream())
    assert ours[("ClusterRole", "flannel")]["rules"] == theirs[("ClusterRole", "flannel")]["rules"]
    for field in ("roleRef", "subjects"):
        assert ours[("ClusterRoleBinding", "flannel")][field] == \
            theirs[("ClusterRoleBinding", "flannel")][field]


def _names(items):
    return [i["name"] for i in items]


def test_daemonset_keeps_every_container_volume_mount_toleration():
    ours, theirs = pod_spec(build_manifest(model())), pod_spec(upstream())
    for field in ("hostNetwork", "priorityClassName", "tolerations", "serviceAccountName",
                  "affinity"):
        assert ours[field] == theirs[field], field
    assert _names(ours["initContainers"]) == _names(theirs["initContainers"])
    assert _names(ours["containers"]) == _names(theirs["containers"])
    assert _names(ours["volumes"]) == _names(theirs["volumes"])
    assert ours["volumes"] == theirs["volumes"]  # default bin dir: identical host paths
    for mine, up in zip(ours["initContainers"] + ours["containers"],
                        theirs["initContainers"] + theirs["containers"]):
        assert mine["image"] == up["image"], "pinned images follow the reference"
        assert mine["command"] == up["command"]
        assert mine["volumeMounts"] == up["volumeMounts"]
        for field in ("env", "ports", "securityContext", "resources", "livenessProbe",
                      "readinessProbe"):
            assert mine.get(field) == up.get(field), (mine["name"], field)
    init = {c["name"]: c for c in ours["initContainers"]}
    assert init["install-cni-plugin"]["args"] == theirs["initContainers"][0]["args"]
    assert init["install-cni"]["args"] == theirs["initContainers"][1]["args"]


def test_configmap_keeps_cni_conf_and_changes_only_the_backend_and_network():
    cm = by_key(build_manifest(model()))[("ConfigMap", "kube-flannel-cfg")]["data"]
    up = by_key(upstream())[("ConfigMap", "kube-flannel-cfg")]["data"]
    assert json.loads(cm["cni-conf.json"]) == json.loads(up["cni-conf.json"])
    ours, theirs = json.loads(cm["net-conf.json"]), json.loads(up["net-conf.json"])
    assert set(ours) == set(theirs)
    assert ours["Backend"] == {"Type": "host-gw"} and theirs["Backend"] == {"Type": "vxlan"}


def test_ip_masq_is_off_by_default_and_can_be_turned_on():
    up_args = pod_spec(upstream())["containers"][0]["args"]
    assert "--ip-masq" in up_args
    args = pod_spec(build_manifest(model()))["containers"][0]["args"]
    assert "--ip-masq" not in args
    assert [a for a in args if a != "--ip-masq"] == [a for a in up_args if a != "--ip-masq"]
    assert "--ip-masq" in flanneld_args({"ip_masq": True})


def test_interface_selection_options():
    args = flanneld_args({"iface": ["eth1", "10.77.0.11"], "iface_regex": ["^enp.*"]})
    assert args[-3:] == ["--iface=eth1", "--iface=10.77.0.11", "--iface-regex=^enp.*"]


def test_registry_override_for_air_gapped_sites():
    spec = pod_spec(build_manifest(model(), {"image_registry": "registry.local:5000/mirror"}))
    images = {c["image"] for c in spec["initContainers"] + spec["containers"]}
    assert images == {"registry.local:5000/mirror/flannel-io/flannel:v0.28.9",
                      "registry.local:5000/mirror/flannel-io/flannel-cni-plugin:v1.9.1-flannel3"}


def test_cni_bin_dir_option_moves_only_the_host_path():
    spec = pod_spec(build_manifest(model(), {"cni_bin_dir": "/usr/lib/cni"}))
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["cni-plugin"]["hostPath"]["path"] == "/usr/lib/cni"


def test_build_is_deterministic():
    assert build_manifest(model()) == build_manifest(model())


@pytest.mark.parametrize("options,var", [
    ({"ip_masq": "yes"}, "cni_flannel_ip_masq"),
    ({"image": "flannel-io/flannel"}, "cni_flannel_image"),  # not pinned
    ({"image": "ghcr.io/Flannel:latest"}, "cni_flannel_image"),
    ({"cni_plugin_image": ""}, "cni_flannel_cni_plugin_image"),
    ({"image_registry": "https://ghcr.io"}, "cni_flannel_image_registry"),
    ({"image_registry": "ghcr.io/"}, "cni_flannel_image_registry"),
    ({"iface": "eth0"}, "cni_flannel_iface"),
    ({"iface": ["eth 0"]}, "cni_flannel_iface"),
    ({"iface": ["averyveryverylongname0"]}, "cni_flannel_iface"),
    ({"iface_regex": ["(unclosed"]}, "cni_flannel_iface_regex"),
    ({"cni_bin_dir": "opt/cni/bin"}, "cni_flannel_cni_bin_dir"),
    ({"cni_bin_dir": "/opt/cni/bin/"}, "cni_flannel_cni_bin_dir"),
    ({"enable_nftables": 1}, "cni_flannel_enable_nftables"),
    ({"backend": "vxlan"}, "cni_flannel_backend"),
])
def test_refused_options_name_the_variable(options, var):
    with pytest.raises(FlannelError) as err:
        validate_options(options)
    assert err.value.var == var
    assert var in str(err.value)


def test_defaults_are_valid_and_pinned():
    opts = validate_options({})
    assert opts == DEFAULTS
    assert ":" in opts["image"] and ":" in opts["cni_plugin_image"]


@pytest.mark.parametrize("options", [{}, {"ip_masq": True, "iface": ["eth0"],
                                          "iface_regex": ["^en"], "cni_bin_dir": "/usr/lib/cni"}])
def test_every_object_passes_kubernetes_validate_strict(tmp_path, options):
    path = tmp_path / "kube-flannel.yml"
    path.write_text(yaml.safe_dump_all(build_manifest(model(), options), sort_keys=True))
    checker = shutil.which("kubernetes-validate") or os.path.join(
        os.path.dirname(sys.executable), "kubernetes-validate")
    out = subprocess.run([checker, "-k", "1.37.0", "--strict", str(path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == 6, out.stdout
