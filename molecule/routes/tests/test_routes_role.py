"""testinfra verify of the routes role on real lab nodes (over SSH from the lab's namespace).

Asserts what the kernel reports (`ip -json route`), the boot file and unit, and that the unit
really re-applies the file: an owned route deleted by hand comes back on `systemctl restart`.
"""
import json

import pytest

testinfra_hosts = ["ansible://all"]

EXPECTED = {
    "db1": {"10.244.0.0/24": "10.80.0.11", "10.244.7.0/24": "10.80.0.21"},
    "cp1": {"10.244.7.0/24": "10.80.0.21"},
    "w1": {"10.244.0.0/24": "10.80.0.11"},
}


def owned(host):
    table = json.loads(host.check_output("ip -json route show table main"))
    return {r["dst"]: r.get("gateway") for r in table if r.get("protocol") == "kubeflat"}


@pytest.fixture
def name(host):
    return host.backend.get_hostname()


def test_owned_routes_are_exactly_the_pod_cidrs(host, name):
    assert owned(host) == EXPECTED[name]


def test_default_and_connected_routes_untouched(host):
    table = json.loads(host.check_output("ip -json route show table main"))
    assert any(r["dst"] == "default" and r.get("gateway") == "10.80.0.1" for r in table)
    assert any(r["dst"] == "10.80.0.0/24" and r.get("protocol") == "kernel" for r in table)


def test_protocol_name_and_boot_file(host, name):
    assert host.file("/etc/iproute2/rt_protos.d/kubeflat.conf").content_string.splitlines()[
        -1] == "201\tkubeflat"
    batch = host.file("/etc/kubeflat/pod-routes.batch")
    assert batch.mode == 0o644 and batch.user == "root"
    lines = [line.split("#")[0].split() for line in batch.content_string.splitlines()
             if line and not line.startswith("#")]
    assert {words[2]: words[4] for words in lines} == EXPECTED[name]
    assert all(words[5:7] == ["proto", "201"] for words in lines)


def test_boot_unit_enabled_and_reapplies_the_file(host, name):
    unit = host.service("kubeflat-pod-routes")
    assert unit.is_enabled
    dest = sorted(EXPECTED[name])[0]
    host.check_output("ip route del %s proto kubeflat" % dest)
    assert dest not in owned(host)
    host.check_output("systemctl restart kubeflat-pod-routes")
    assert owned(host) == EXPECTED[name]
