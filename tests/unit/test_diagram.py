"""kubeflat_diagram: model + live routes -> graph -> DOT (drawn for real in
tests/integration/test_diagram.py)."""
import shutil
import subprocess

import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_diagram as d
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model

HOSTS = [
    {"name": "cp1", "groups": ["kube_control_plane"], "address": "10.77.0.11"},
    {"name": "w1", "groups": ["kube_node"], "address": "10.77.0.21"},
    {"name": "w2", "groups": ["kube_node"], "address": "10.77.0.22"},
    {"name": "db1", "groups": ["k8s_outside"], "address": "10.77.0.31"},
]


def model(**settings):
    base = {"cluster_name": "lab", "host_networks": ["10.77.0.0/24"]}
    base.update(settings)
    return build_model(base, HOSTS)


def r(dest, via):
    return {"dest": dest, "via": via}


def routes_of(graph, host):
    return {x["dest"]: x for x in graph["routes"] if x["host"] == host}


def test_every_node_cidr_and_outside_host_in_graph_and_dot():
    graph = d.build_graph(model())
    dot = d.to_dot(graph)
    for name, cidr in (("cp1", "10.244.0.0/24"), ("w1", "10.244.1.0/24"),
                       ("w2", "10.244.2.0/24")):
        assert '"host:%s"' % name in dot and "pods %s" % cidr in dot
    assert '"host:db1"' in dot and "outside host" in dot
    assert "segment 10.77.0.0/24" in dot
    # static mode: 3 nodes x 2 peers + db1 x 3 nodes, none checked yet
    assert len(graph["routes"]) == 9
    assert {x["status"] for x in graph["routes"]} == {"expected"}
    assert "no routes checked yet" in dot


def test_missing_wrong_stale_and_present():
    live = {"db1": [r("10.244.0.0/24", "10.77.0.11"), r("10.244.1.0/24", "10.77.0.21")],
            "w1": [r("10.244.0.0/24", "10.77.0.11"), r("10.244.2.0/24", "10.77.0.99"),
                   r("10.244.9.0/24", "10.77.0.98")]}
    graph = d.build_graph(model(), live)
    db1, w1 = routes_of(graph, "db1"), routes_of(graph, "w1")
    assert db1["10.244.0.0/24"]["status"] == "present"
    assert db1["10.244.2.0/24"]["status"] == "missing"
    assert w1["10.244.2.0/24"]["status"] == "wrong"
    assert w1["10.244.2.0/24"]["actual_via"] == ["10.77.0.99"]
    assert w1["10.244.9.0/24"]["status"] == "stale"
    assert routes_of(graph, "w2")["10.244.0.0/24"]["status"] == "expected"
    assert graph["unknown_gateways"] == ["10.77.0.98"]
    counts, problems = d.summary(graph)
    assert counts == {"present": 3, "missing": 1, "wrong": 1, "expected": 4, "stale": 1}
    assert "db1: missing 10.244.2.0/24 via 10.77.0.22" in problems
    dot = d.to_dot(graph)
    line = [x for x in dot.splitlines() if '"route:db1:10.244.2.0/24"' in x][0]
    assert 'style="dashed"' in line and 'color="#d32f2f"' in line
    assert "MISSING 10.244.2.0/24 via 10.77.0.22" in line and '"host:w2"' in line
    assert "2/3 routes present, 1 missing" in dot


def test_dot_is_deterministic():
    live = {"db1": [r("10.244.1.0/24", "10.77.0.21")]}
    assert d.to_dot(d.build_graph(model(), live)) == d.to_dot(d.build_graph(model(), dict(live)))


def test_have_from_check_plan_apply_and_unusable_results():
    keep = [{"dest": "10.244.0.0/24", "via": "10.77.0.11", "node": "cp1"}]
    add = [{"dest": "10.244.2.0/24", "via": "10.77.0.22", "node": "w2"}]
    replace = [{"dest": "10.244.1.0/24", "via": "10.77.0.21", "node": "w1"}]
    check = {"pending": True, "routes": ["desired lines are not what the host has"],
             "plan": {"keep": keep, "add": add, "replace": replace, "delete": []},
             "diff": [{"before_header": "db1: kubeflat routes (ip route, proto 201)",
                       "before": "10.244.0.0/24 via 10.77.0.11\n10.244.1.0/24 via 10.77.0.5\n"}]}
    assert d.have_from_result(check) == [r("10.244.0.0/24", "10.77.0.11"),
                                         r("10.244.1.0/24", "10.77.0.5")]
    applied = {"changed": True, "pending": True, "routes": ["10.244.0.0/24 via 10.77.0.11"]}
    assert d.have_from_result(applied) == [r("10.244.0.0/24", "10.77.0.11")]
    # the module's applied result also carries the plan it carried out: the routes read back
    # after the change are what the host has, not the plan's "before"
    applied_plan = dict(check, check_mode=False, changed=True,
                        routes=["10.244.0.0/24 via 10.77.0.11", "10.244.1.0/24 via 10.77.0.21",
                                "10.244.2.0/24 via 10.77.0.22"])
    assert d.have_from_result(applied_plan) == [r("10.244.0.0/24", "10.77.0.11"),
                                                r("10.244.1.0/24", "10.77.0.21"),
                                                r("10.244.2.0/24", "10.77.0.22")]
    assert d.have_from_result(dict(check, check_mode=True)) == d.have_from_result(check)
    converged = {"pending": False, "plan": {"keep": keep, "add": [], "replace": [],
                                            "delete": []}, "routes": ["10.244.0.0/24 via 10.77.0.11"]}
    assert d.have_from_result(converged) == [r("10.244.0.0/24", "10.77.0.11")]
    for bad in (None, {"skipped": True}, {"failed": True, "routes": []}, {"changed": False}):
        assert d.have_from_result(bad) is None


def test_live_routes_freshest_register_wins():
    reg = {"db1": {"__outside_routes_plan": {"pending": False, "routes": ["10.244.0.0/24 via 10.77.0.11"]},
                   "__outside_routes_result": {"skipped": True}},
           "w1": {"__cni_static_plan": {"pending": False, "routes": []},
                  "__outside_routes_result": {"changed": True, "routes": ["10.244.2.0/24 via 10.77.0.22"]}},
           "w2": {}}
    live = d.live_routes(reg)
    assert live == {"db1": [r("10.244.0.0/24", "10.77.0.11")],
                    "w1": [r("10.244.2.0/24", "10.77.0.22")]}


def test_memory_keeps_hosts_not_checked_this_run():
    hosts = ["cp1", "w1", "w2", "db1"]
    network_run = {"w1": [r("10.244.0.0/24", "10.77.0.11")]}
    routes_run = {"db1": [r("10.244.0.0/24", "10.77.0.11")]}
    first = d.remember(d.load_seen(None, hosts), network_run)
    text = d.dump_seen(first)
    second = d.remember(d.load_seen(text, hosts), routes_run)
    assert second == {"w1": network_run["w1"], "db1": routes_run["db1"]}
    # this run's check wins over the memory
    fresh = {"w1": [r("10.244.0.0/24", "10.77.0.99")]}
    assert d.remember(second, fresh)["w1"] == fresh["w1"]
    # two runs with different tags draw the same picture once both were seen
    both = d.dump_seen(second)
    assert d.to_dot(d.build_graph(model(), d.remember(d.load_seen(both, hosts), network_run))) \
        == d.to_dot(d.build_graph(model(), d.remember(d.load_seen(both, hosts), routes_run)))
    # a host that left the inventory, and unreadable entries, are forgotten
    assert d.load_seen(both, ["w1"]) == {"w1": network_run["w1"]}
    assert d.load_seen('{"hosts": {"w1": [{"dest": 1}]}}', hosts) == {}
    assert d.load_seen("not json", hosts) == {} and d.load_seen("[]", hosts) == {}


def test_bgp_racks_routers_and_sessions():
    hosts = [{"name": "a1", "groups": ["kube_control_plane"], "address": "10.1.0.11"},
             {"name": "b1", "groups": ["kube_node"], "address": "10.2.0.11"},
             {"name": "far", "groups": ["k8s_outside"], "address": "10.3.0.5"}]
    m = build_model({"cluster_name": "racks", "host_networks": ["10.1.0.0/24", "10.2.0.0/24",
                                                                "10.3.0.0/24"],
                     "bgp": True, "bgp_racks": [
                         {"name": "ra", "network": "10.1.0.0/24", "asn": 65001,
                          "peers": [{"address": "10.1.0.1", "asn": 65000}]},
                         {"name": "rb", "network": "10.2.0.0/24", "asn": 65002,
                          "peers": [{"address": "10.2.0.1", "asn": 65000}]}]}, hosts)
    graph = d.build_graph(m)
    assert [s["rack"] for s in graph["segments"]] == ["ra", "rb", None]
    assert [x["address"] for x in graph["routers"]] == ["10.1.0.1", "10.2.0.1"]
    assert {(x["node"], x["router"]) for x in graph["sessions"]} == {("a1", "10.1.0.1"),
                                                                     ("b1", "10.2.0.1")}
    assert graph["routes"] == []          # one node per rack, far sits on a segment without nodes
    dot = d.to_dot(graph)
    assert "rack ra: 10.1.0.0/24 (AS 65001)" in dot and '"router:10.2.0.1"' in dot
    assert 'label="BGP"' in dot


def test_large_fleet_draws_only_problems():
    live = {"db1": [r("10.244.0.0/24", "10.77.0.11")]}
    graph = d.build_graph(model(), live, max_route_edges=3)
    drawn = [x for x in graph["routes"] if x["drawn"]]
    assert {x["status"] for x in drawn} == {"missing"} and len(drawn) == 2
    assert "only routes that are not right are drawn" in d.to_dot(graph)


def test_refuses_what_it_cannot_draw():
    with pytest.raises(d.DiagramError, match="not a cluster model"):
        d.build_graph({"cluster_name": "x"})
    with pytest.raises(d.DiagramError, match="'bogus' is not a prefix"):
        d.parse_line("bogus via 10.0.0.1")


def test_quote_escapes():
    assert d.quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


@pytest.mark.skipif(not shutil.which("dot"), reason="needs Debian graphviz")
def test_graphviz_accepts_the_dot():
    live = {"db1": [r("10.244.0.0/24", "10.77.0.11")], "w1": [r("10.244.9.0/24", "10.77.0.98")]}
    proc = subprocess.run(["dot", "-Tsvg"], input=d.to_dot(d.build_graph(model(), live)),
                          capture_output=True, text=True, check=True)
    assert 'id="route:db1:10.244.2.0/24"' in proc.stdout
    assert "MISSING 10.244.2.0/24 via 10.77.0.22" in proc.stdout
