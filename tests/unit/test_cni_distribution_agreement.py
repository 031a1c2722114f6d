"""The CNI configs agree with what the distribution is told (issue 7 builds those from the same
model): flannel's Network and Cilium's native-routing CIDR equal kubeadm's podSubnet and Talos'
podSubnets; Cilium's kube-proxy replacement matches kubeadm's skipped addon/kube-proxy phase
and Talos' cluster.proxy.disabled with cni.name none."""
import pytest

from cni_fixtures import model
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_cilium import build_values
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_flannel import net_conf
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_kubeadm as kubeadm
from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_talos as talos


@pytest.mark.parametrize("pod_cidr", ["10.244.0.0/16", "172.20.0.0/15"])
def test_flannel_network_equals_kubeadm_and_talos_pod_subnet(pod_cidr):
    m = model(cni="flannel", pod_cidr=pod_cidr)
    network = net_conf(m)["Network"]
    assert network == kubeadm.cluster_configuration(m)["networking"]["podSubnet"]
    assert [network] == talos.common_patch(m)["cluster"]["network"]["podSubnets"]
    assert talos.common_patch(m)["cluster"]["network"]["cni"] == {"name": "none"}


@pytest.mark.parametrize("kpr", [True, False])
def test_cilium_kube_proxy_replacement_matches_the_distribution(kpr):
    m = model(cni="cilium", kube_proxy_replacement=kpr)
    values = build_values(m)
    assert values["kubeProxyReplacement"] is kpr
    assert values["ipv4NativeRoutingCIDR"] == \
        kubeadm.cluster_configuration(m)["networking"]["podSubnet"]
    init = kubeadm.init_configuration(m, kubeadm.generate_token(),
                                      kubeadm.generate_certificate_key())
    assert ("addon/kube-proxy" in init.get("skipPhases", [])) is kpr
    patch = talos.common_patch(model(cni="cilium", kube_proxy_replacement=kpr,
                                     distribution="talos"))
    assert patch["cluster"].get("proxy", {}).get("disabled", False) is kpr
    assert patch["cluster"]["network"]["cni"] == {"name": "none"}
