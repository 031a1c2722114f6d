"""Unit tests for plugins/module_utils/kubeflat_routes.py: parsing `ip -json`, planning, refusals.

The JSON inputs below are real `ip -json -details route show table main` / `ip -json addr show`
output shapes from iproute2 6.1 (protocol omitted for boot routes, "201" for an unnamed
protocol, host routes without /32).
"""
import json

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import (
    RouteError, batch_file, check_against_host, desired_lines, normalise_dest, owned_lines,
    parse_addresses, parse_routes, plan_changed, plan_routes, route_argv, rt_protos_file,
    validate_desired)

ROUTES_JSON = json.dumps([
    {"type": "unicast", "dst": "default", "gateway": "10.77.0.1", "dev": "eth0", "flags": []},
    {"type": "unicast", "dst": "10.77.0.0/24", "dev": "eth0", "protocol": "kernel",
     "scope": "link", "prefsrc": "10.77.0.31", "flags": []},
    {"type": "unicast", "dst": "10.244.0.0/24", "gateway": "10.77.0.11", "dev": "eth0",
     "protocol": "kubeflat", "scope": "global", "flags": []},
    {"type": "unicast", "dst": "10.244.2.0/24", "gateway": "10.77.0.99", "dev": "eth0",
     "protocol": "201", "scope": "global", "flags": []},
    {"type": "unicast", "dst": "10.99.0.0/24", "gateway": "10.77.0.21", "dev": "eth0",
     "protocol": "static", "scope": "global", "flags": []},
    {"type": "unicast", "dst": "10.77.0.50", "gateway": "10.77.0.1", "dev": "eth0",
     "protocol": "static", "scope": "global", "flags": []},
])
ADDR_JSON = json.dumps([
    {"ifindex": 1, "ifname": "lo", "addr_info": [
        {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
        {"family": "inet6", "local": "::1", "prefixlen": 128, "scope": "host"}]},
    {"ifindex": 2, "ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "10.77.0.31", "prefixlen": 24, "scope": "global"}]},
])

DESIRED = [
    {"dest": "10.244.1.0/24", "via": "10.77.0.21", "node": "w1"},
    {"dest": "10.244.0.0/24", "via": "10.77.0.11", "node": "cp1"},
]


def state():
    return parse_routes(ROUTES_JSON), parse_addresses(ADDR_JSON)


def test_parse_routes_normalises_and_flags_ownership():
    routes = {r["dest"]: r for r in parse_routes(ROUTES_JSON)}
    assert routes["0.0.0.0/0"]["protocol"] == "boot" and not routes["0.0.0.0/0"]["owned"]
    assert routes["10.77.0.0/24"]["connected"] and not routes["10.77.0.0/24"]["owned"]
    assert routes["10.244.0.0/24"]["owned"] and routes["10.244.0.0/24"]["via"] == "10.77.0.11"
    assert routes["10.244.2.0/24"]["owned"]  # numeric protocol before rt_protos.d is read
    assert not routes["10.99.0.0/24"]["owned"]
    assert "10.77.0.50/32" in routes


def test_parse_routes_accepts_decoded_json_bytes_and_empty():
    assert parse_routes(json.loads(ROUTES_JSON)) == parse_routes(ROUTES_JSON.encode())
    assert parse_routes("") == [] and parse_routes(None) == []
    assert parse_routes([{"dst": "fe80::/64", "dev": "eth0"}]) == []


def test_normalise_dest():
    assert normalise_dest("default") == "0.0.0.0/0"
    assert normalise_dest("10.1.2.3") == "10.1.2.3/32"
    assert normalise_dest("10.1.2.0/24") == "10.1.2.0/24"


def test_parse_addresses_ipv4_only_with_networks():
    addrs = parse_addresses(ADDR_JSON)
    assert addrs == [
        {"dev": "lo", "address": "127.0.0.1", "network": "127.0.0.0/8", "loopback": True},
        {"dev": "eth0", "address": "10.77.0.31", "network": "10.77.0.0/24", "loopback": False},
    ]


def test_plan_adds_keeps_and_deletes_only_owned_stale_routes():
    routes, addrs = state()
    plan = plan_routes("db1", DESIRED, routes, addrs)
    assert [r["dest"] for r in plan["keep"]] == ["10.244.0.0/24"]
    assert [r["dest"] for r in plan["add"]] == ["10.244.1.0/24"]
    assert plan["replace"] == []
    # 10.244.2.0/24 is owned (proto 201) and no longer wanted; foreign/default/connected stay.
    assert plan["delete"] == [{"dest": "10.244.2.0/24", "via": "10.77.0.99", "dev": "eth0"}]
    assert plan_changed(plan)


def test_plan_replaces_owned_route_with_new_gateway_and_is_empty_when_converged():
    routes, addrs = state()
    plan = plan_routes("db1", [{"dest": "10.244.0.0/24", "via": "10.77.0.12"}], routes, addrs)
    assert [r["via"] for r in plan["replace"]] == ["10.77.0.12"]
    converged = [r for r in routes if not (r["owned"] and r["dest"] == "10.244.2.0/24")]
    plan = plan_routes("db1", [{"dest": "10.244.0.0/24", "via": "10.77.0.11"}], converged, addrs)
    assert not plan_changed(plan)


def test_empty_desired_removes_every_owned_route_and_nothing_else():
    routes, addrs = state()
    plan = plan_routes("db1", [], routes, addrs)
    assert sorted(r["dest"] for r in plan["delete"]) == ["10.244.0.0/24", "10.244.2.0/24"]


def test_refuses_gateway_not_on_connected_subnet():
    routes, addrs = state()
    with pytest.raises(RouteError) as err:
        plan_routes("db1", [{"dest": "10.244.1.0/24", "via": "10.78.0.21"}], routes, addrs)
    assert err.value.host == "db1" and err.value.prefix == "10.244.1.0/24"
    assert "not on a subnet connected" in str(err.value) and "10.77.0.0/24" in str(err.value)


def test_refuses_gateway_that_is_the_host_itself():
    routes, addrs = state()
    with pytest.raises(RouteError, match="own address"):
        plan_routes("db1", [{"dest": "10.244.1.0/24", "via": "10.77.0.31"}], routes, addrs)


def test_refuses_destination_overlapping_connected_network():
    routes, addrs = state()
    with pytest.raises(RouteError) as err:
        plan_routes("db1", [{"dest": "10.77.0.0/16", "via": "10.77.0.21"}], routes, addrs)
    assert "overlaps network 10.77.0.0/24 connected to this host on eth0" in str(err.value)
    assert "db1" in str(err.value) and "10.77.0.0/16" in str(err.value)


def test_refuses_foreign_route_to_same_prefix():
    routes, addrs = state()
    with pytest.raises(RouteError) as err:
        plan_routes("db1", [{"dest": "10.99.0.0/24", "via": "10.77.0.22"}], routes, addrs)
    assert "foreign route" in str(err.value) and "protocol static" in str(err.value)


def test_refuses_default_route_and_bad_shapes():
    with pytest.raises(RouteError, match="default route"):
        validate_desired("db1", [{"dest": "0.0.0.0/0", "via": "10.77.0.1"}])
    with pytest.raises(RouteError, match="host bits"):
        validate_desired("db1", [{"dest": "10.244.1.1/24", "via": "10.77.0.21"}])
    with pytest.raises(RouteError, match="not a CIDR"):
        validate_desired("db1", [{"dest": "10.244.1.0", "via": "10.77.0.21"}])
    with pytest.raises(RouteError, match="gateway"):
        validate_desired("db1", [{"dest": "10.244.1.0/24", "via": "w1"}])
    with pytest.raises(RouteError, match="must be a dict"):
        validate_desired("db1", ["10.244.1.0/24"])
    with pytest.raises(RouteError, match="overlaps another desired route"):
        validate_desired("db1", [{"dest": "10.244.0.0/23", "via": "10.77.0.21"},
                                 {"dest": "10.244.1.0/24", "via": "10.77.0.22", "node": "w2"}])


def test_refusal_happens_before_any_plan_even_if_other_routes_are_fine():
    routes, addrs = state()
    bad = DESIRED + [{"dest": "10.99.0.0/24", "via": "10.77.0.22"}]
    with pytest.raises(RouteError):
        plan_routes("db1", bad, routes, addrs)


def test_check_against_host_accepts_gateway_on_connected_route_only_network():
    routes = parse_routes([{"dst": "10.88.0.0/24", "dev": "eth1", "protocol": "kernel",
                            "scope": "link"}])
    check_against_host("n", validate_desired("n", [{"dest": "10.244.1.0/24",
                                                    "via": "10.88.0.5"}]), routes, [])


def test_route_argv_always_names_the_protocol():
    route = {"dest": "10.244.1.0/24", "via": "10.77.0.21"}
    assert route_argv("/sbin/ip", "add", route) == [
        "/sbin/ip", "-4", "route", "add", "10.244.1.0/24", "via", "10.77.0.21",
        "proto", "201", "table", "main"]
    assert route_argv("ip", "delete", route)[3] == "del"
    assert "proto" in route_argv("ip", "delete", {"dest": "10.244.1.0/24"})
    with pytest.raises(ValueError):
        route_argv("ip", "flush", route)


def test_lines_and_files_are_sorted_and_deterministic():
    routes, _ = state()
    assert owned_lines(routes) == ["10.244.0.0/24 via 10.77.0.11", "10.244.2.0/24 via 10.77.0.99"]
    assert desired_lines(DESIRED) == ["10.244.0.0/24 via 10.77.0.11",
                                      "10.244.1.0/24 via 10.77.0.21"]
    text = batch_file(DESIRED)
    assert text == batch_file(list(reversed(DESIRED)))
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "route replace 10.244.0.0/24 via 10.77.0.11 proto 201 table main  # node cp1",
        "route replace 10.244.1.0/24 via 10.77.0.21 proto 201 table main  # node w1"]
    assert rt_protos_file().splitlines()[-1] == "201\tkubeflat"


# --------------------------------------------------------------------------- per-host route set
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_routes import (  # noqa: E402
    boot_unit, host_route_set, managed_host, route_items)

MODEL = {
    "cni": "static",
    "node_names": ["cp1", "w1"],
    "outside_hosts": [{"name": "db1", "address": "10.77.0.31"}],
    "pod_routes": [{"dest": "10.244.0.0/24", "via": "10.77.0.11", "node": "cp1"},
                   {"dest": "10.244.1.0/24", "via": "10.77.0.21", "node": "w1"}],
}


def test_route_set_per_host_kind():
    assert host_route_set(MODEL, "db1") == MODEL["pod_routes"]
    assert host_route_set(MODEL, "w1") == [MODEL["pod_routes"][0]]
    assert host_route_set(MODEL, "stranger") is None
    flannel = dict(MODEL, cni="flannel")
    assert host_route_set(flannel, "w1") is None and not managed_host(flannel, "w1")
    assert host_route_set(flannel, "db1") == MODEL["pod_routes"]


def test_discovered_routes_replace_the_model():
    found = [{"dest": "10.244.7.0/24", "via": "10.77.0.21", "node": "w1"}]
    assert host_route_set(MODEL, "db1", found) == found
    assert host_route_set(MODEL, "w1", found) == []


def test_route_items_carry_the_boot_unit():
    items = route_items(MODEL, "db1", persist_path="/etc/kubeflat/r.batch", unit_name="kf-routes")
    assert items["routes"] == {"routes": MODEL["pod_routes"], "persist_path": "/etc/kubeflat/r.batch"}
    assert items["units"] == [{"name": "kf-routes.service"}]
    unit = items["files"][0]
    assert unit["path"] == "/etc/systemd/system/kf-routes.service"
    assert "ExecStart=ip -force -batch /etc/kubeflat/r.batch" in unit["content"]
    assert "ConditionPathExists=/etc/kubeflat/r.batch" in unit["content"]
    assert "DefaultDependencies=no" in unit["content"] and "Before=network-online.target" in unit["content"]
    assert route_items(dict(MODEL, cni="cilium"), "w1") is None


def test_boot_unit_is_a_complete_unit():
    text = boot_unit()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text
    assert text.endswith("\n")
