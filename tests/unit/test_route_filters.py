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
