"""testinfra verify of node_prep on real lab nodes (over SSH from the lab's namespace)."""
import yaml


def test_kernel_modules_are_persisted(host):
    conf = host.file("/etc/modules-load.d/kubeflat.conf")
    assert conf.exists and conf.mode == 0o644
    lines = [l for l in conf.content_string.splitlines() if l and not l.startswith("#")]
    assert lines == ["overlay", "br_netfilter"]


def test_module_features_are_present(host):
    # built into the lab kernel: overlay is a filesystem, br_netfilter made /proc/sys/net/bridge
    assert "overlay" in host.file("/proc/filesystems").content_string
    assert host.file("/proc/sys/net/bridge/bridge-nf-call-iptables").exists


def test_runtime_sysctls_are_set(host):
    assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"
    assert host.file("/proc/sys/net/bridge/bridge-nf-call-iptables").content_string.strip() == "1"
    assert host.file("/proc/sys/net/bridge/bridge-nf-call-ip6tables").content_string.strip() == "1"


def test_sysctls_are_persisted_including_the_ones_denied_here(host):
    conf = host.file("/etc/sysctl.d/90-kubeflat.conf").content_string
    for line in ("net.ipv4.ip_forward = 1", "net.bridge.bridge-nf-call-iptables = 1",
                 "vm.overcommit_memory = 1", "kernel.panic = 10"):
        assert line in conf


def test_no_active_swap(host):
    assert len([l for l in host.file("/proc/swaps").content_string.splitlines() if l.strip()]) == 1


def test_containerd_config_is_accepted_by_containerd(host):
    conf = host.file("/etc/containerd/config.toml").content_string
    assert "SystemdCgroup = true" in conf
    # containerd itself parses the file: the merged config shows our values.
    dump = host.run("containerd config dump")
    assert dump.rc == 0, dump.stderr
    assert "SystemdCgroup = true" in dump.stdout
    assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in dump.stdout
    assert 'config_path = "/etc/containerd/certs.d"' in dump.stdout


def test_containerd_runs_and_answers(host):
    svc = host.service("containerd")
    assert svc.is_running and svc.is_enabled
    ver = host.run("ctr version")
    assert ver.rc == 0 and "Server:" in ver.stdout, ver.stderr


def test_registry_mirror(host):
    hosts_toml = host.file("/etc/containerd/certs.d/docker.io/hosts.toml").content_string
    assert 'server = "https://registry-1.docker.io"' in hosts_toml
    assert '[host."http://10.79.0.1:5000"]' in hosts_toml


def test_crictl_points_at_containerd(host):
    conf = yaml.safe_load(host.file("/etc/crictl.yaml").content_string)
    assert conf["runtime-endpoint"] == "unix:///run/containerd/containerd.sock"


def test_kubernetes_binaries_are_the_boundary(host):
    # node_prep_install_kubernetes_packages is false here: nothing pretends to install them.
    assert host.run("command -v kubeadm").rc != 0
    assert host.run("command -v kubelet").rc != 0
