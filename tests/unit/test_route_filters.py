"""Unit tests for plugins/filter/routes.py: the stage barrier and the route items filter."""
from ansible_collections.kubeflat.cluster.plugins.filter.routes import kubeflat_refused, kubeflat_route_items

HOSTVARS = {
    "db1": {"__plan": {"failed": True, "msg": "kubeflat refuses route on host db1, prefix "
                                              "10.244.1.0/24: a foreign route"}},
    "w9": {"__plan": {"failed": True, "unreachable": True, "msg": "ssh: No route to host"}},
    "w1": {"__plan": {"changed": False, "pending": True}},
    "lb1": {},
}


def test_refused_lists_failed_hosts_but_never_unreachable_ones():
    got = kubeflat_refused(HOSTVARS, ["db1", "w9", "w1", "lb1"], ["w1"], "__plan")
    assert got == ["db1: kubeflat refuses route on host db1, prefix 10.244.1.0/24: a foreign route"]


def test_hosts_without_a_failed_check_are_not_refused():
    # lb1 left the play without a failed check (e.g. ended by meta end_host): not a refusal.
    assert kubeflat_refused(HOSTVARS, ["w1", "lb1"], ["w1"], "__plan") == []
    assert kubeflat_refused(HOSTVARS, ["w1"], ["w1"], "__plan") == []


def test_route_items_filter_defaults_to_kubeflat_paths():
    model = {"cni": "static", "node_names": ["w1"], "outside_hosts": [],
             "pod_routes": [{"dest": "10.244.1.0/24", "via": "10.77.0.21", "node": "w1"}]}
    items = kubeflat_route_items(model, "w1", None, None, None)
    assert items["routes"] == {"routes": [], "persist_path": "/etc/kubeflat/pod-routes.batch"}
    assert items["units"] == [{"name": "kubeflat-pod-routes.service"}]
    assert kubeflat_route_items(model, "db1", None, None, None) is None


def test_network_and_routes_stage_converge_the_same_node_route_set():
    """playbooks/routes.yml skips nodes whose routes this run's network stage converged: that
    is only right while both stages build the same items. The network stage (cni_static) passes
    outside_routes_persist_path/unit_name when the inventory sets them, else none (the filter's
    defaults); the routes stage passes the outside_routes role defaults: they must be equal."""
    import os
    import yaml
    from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_routes
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(root, "roles", "outside_routes", "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    assert defaults["outside_routes_persist_path"] == kubeflat_routes.PERSIST_PATH
    assert defaults["outside_routes_unit_name"] == kubeflat_routes.UNIT_NAME
    model = {"cni": "static", "node_names": ["w1", "w2"], "outside_hosts": [],
             "pod_routes": [{"dest": "10.244.1.0/24", "via": "10.77.0.21", "node": "w1"},
                            {"dest": "10.244.2.0/24", "via": "10.77.0.22", "node": "w2"}]}
    network = kubeflat_route_items(model, "w1", persist_path=None, unit_name=None)
    routes = kubeflat_route_items(model, "w1", None, defaults["outside_routes_persist_path"],
                                  defaults["outside_routes_unit_name"])
    assert network == routes and network["routes"]["routes"]
    with open(os.path.join(root, "roles", "cni_static", "vars", "main.yml")) as handle:
        text = handle.read()
    assert "persist_path=outside_routes_persist_path | default(none)" in text
    assert "unit_name=outside_routes_unit_name | default(none)" in text
