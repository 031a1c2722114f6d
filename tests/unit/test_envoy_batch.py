"""Unit tests for plugins/plugin_utils/kubeflat_envoy_batch.py (merging Envoy bootstraps) and the
batched envoy checks of kubeflat_checkers, with the real envoy binary of the .venv: a merged
batch refuses exactly what the files refuse alone, naming the right file."""
import copy
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_model import build_model
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_checkers as checkers
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_envoy_batch as batch
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_edge import render_edge
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import dump_yaml
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENVOY = os.path.join(ROOT, ".venv", "bin", "envoy")
MODEL = build_model(
    {"cluster_name": "lab", "distribution": "none", "host_networks": ["10.77.0.0/24"]},
    [{"name": "cp1", "address": "10.77.0.11", "groups": ["kube_control_plane", "k8s_cluster"]},
     {"name": "w1", "address": "10.77.0.21", "groups": ["kube_node", "k8s_cluster"]}])


def catalog(count, namespace="shop"):
    """``count`` apps, each calling the next two (two listeners, two clusters per sidecar)."""
    apps = []
    for i in range(count):
        app = {"name": "app%02d" % i, "image": "example/app%02d:1" % i,
               "ports": [{"name": "http", "port": 8080}],
               "probes": {"readiness": {"path": "/ready"}}}
        calls = ["app%02d" % j for j in (i + 1, i + 2) if j < count + 2]
        app["calls"] = calls
        apps.append(app)
    apps += [{"name": "app%02d" % j, "image": "example/leaf:1",
              "ports": [{"name": "http", "port": 8080}]} for j in (count, count + 1)]
    return apps


def sidecars(count=6):
    """``{rel: text}`` of real rendered sidecars (kubeflat_specs.render_apps)."""
    files = render_apps(catalog(count), {"namespace": "shop"}, MODEL)
    return {rel: text for rel, text in files.items() if rel.startswith("envoy/")}


def edge_configs():
    files = render_edge(catalog(2), {"namespace": "shop"}, {}, {}, MODEL)
    return {rel: text for rel, text in files.items() if rel.startswith("envoy/")}


def load(text):
    return yaml.safe_load(text)


def edited(text, change):
    """A rendered config changed by ``change(doc)`` and written as kubeflat writes it (so it
    stays batchable: the batch itself must catch what is wrong)."""
    doc = load(text)
    change(doc)
    return dump_yaml(doc)


def route(doc, listener=0):
    return doc["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]


# --- the merge, pure ------------------------------------------------------------------------

def test_rendered_sidecars_are_batchable_and_the_edge_wildcards_are_not():
    for rel, text in sidecars().items():
        doc, key = batch.plan(rel, text)
        assert doc == load(text) and key
    for rel, text in edge_configs().items():  # 0.0.0.0 listeners: validated alone
        with pytest.raises(batch.NotBatchable, match="0.0.0.0.*not an IPv4 loopback"):
            batch.plan(rel, text)


def test_merge_prefixes_names_and_references_and_maps_addresses_per_file():
    texts = sorted(sidecars(3).items())
    docs = [batch.plan(rel, text)[0] for rel, text in texts]
    merged = batch.merge(docs)
    originals = [copy.deepcopy(d) for d in docs]
    assert docs == originals  # nothing modified in place
    assert merged["node"] == docs[0]["node"] and merged["admin"] == docs[0]["admin"]
    listeners = merged["static_resources"]["listeners"]
    clusters = merged["static_resources"]["clusters"]
    assert len(listeners) == sum(len(d["static_resources"]["listeners"]) for d in docs)
    position = 0
    seen_addresses = set()
    for index, doc in enumerate(docs):
        marker = "kfbatch%d_" % index
        own_addresses = set()
        for original in doc["static_resources"]["listeners"]:
            mine = listeners[position]
            position += 1
            assert mine["name"] == marker + original["name"]
            config = mine["filter_chains"][0]["filters"][0]["typed_config"]
            assert config["route_config"]["name"] == \
                marker + original["filter_chains"][0]["filters"][0]["typed_config"][
                    "route_config"]["name"]
            assert config["stat_prefix"] == \
                original["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"]
            assert route({"static_resources": {"listeners": [mine]}})["cluster"] == \
                marker + route({"static_resources": {"listeners": [original]}})["cluster"]
            socket = mine["address"]["socket_address"]
            assert socket["port_value"] == original["address"]["socket_address"]["port_value"]
            assert socket["address"].startswith("127.") and socket["address"] != "127.0.0.1"
            own_addresses.add(socket["address"])
        # one original IP (127.0.0.1) -> one address of this file's own, no other file's
        assert len(own_addresses) == 1 and not own_addresses & seen_addresses
        seen_addresses |= own_addresses
    names = [c["name"] for c in clusters]
    assert len(set(names)) == len(names)  # the same upstream in two files: two clusters
    for cluster in clusters:
        assert cluster["load_assignment"]["cluster_name"] == cluster["name"]
        assert cluster["name"].startswith("kfbatch")
    # every reference resolves inside its own file
    for listener in listeners:
        ref = route({"static_resources": {"listeners": [listener]}})["cluster"]
        assert ref in names and ref.split("_", 1)[0] == listener["name"].split("_", 1)[0]


def test_address_mapping_is_injective_inside_a_file():
    text = sidecars(1)["envoy/sidecars/shop/app00.yaml"]

    def two_ips(doc):
        doc["static_resources"]["listeners"][1]["address"]["socket_address"]["address"] = \
            "127.0.0.2"
    doc = batch.plan("a.yaml", edited(text, two_ips))[0]
    same = batch.plan("b.yaml", text)[0]
    merged = batch.merge([doc, same])["static_resources"]["listeners"]
    ips = [l["address"]["socket_address"]["address"] for l in merged]
    assert ips[0] != ips[1]           # two IPs of file 0 stay two
    assert ips[2] == ips[3]           # one IP of file 1 stays one
    assert len(set(ips)) == 3
    assert batch.mapped_address(batch.FIRST_ADDRESS) == "127.1.0.0"
    with pytest.raises(ValueError):
        batch.mapped_address(1 << 24)


def test_markers_never_make_two_names_one():
    assert batch.file_marker(1) + "1_x" != batch.file_marker(11) + "x"
    assert len({batch.file_marker(i) for i in range(batch.MAX_BATCH_SIZE)}) == \
        batch.MAX_BATCH_SIZE


def test_remainder_groups_configs_that_differ_only_in_their_listeners_clusters_and_node():
    texts = sidecars(3)
    keys = {batch.plan(rel, text)[1] for rel, text in texts.items()}
    assert len(keys) == 1  # every sidecar: same admin, node by shape
    text = texts["envoy/sidecars/shop/app00.yaml"]
    admin = edited(text, lambda d: d["admin"]["address"]["socket_address"].update(
        port_value=9902))
    assert batch.plan("x.yaml", admin)[1] not in keys
    no_cluster = edited(text, lambda d: d["node"].pop("cluster"))
    assert batch.plan("x.yaml", no_cluster)[1] not in keys
    # a node id that is not a plain name is compared by value
    odd = [batch.plan("x.yaml", edited(text, lambda d, v=v: d["node"].update(id=v)))[1]
           for v in ("a b", "c d")]
    assert odd[0] != odd[1] and not set(odd) & keys


def _set(path, value):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


LISTENER0 = ["static_resources", "listeners", 0]
CLUSTER0 = ["static_resources", "clusters", 0]
SOCKET0 = LISTENER0 + ["address", "socket_address"]


@pytest.mark.parametrize("change,reason", [
    (_set(SOCKET0 + ["address"], "0.0.0.0"), "not an IPv4 loopback"),
    (_set(SOCKET0 + ["address"], "::1"), "not an IPv4 loopback"),
    (_set(SOCKET0 + ["address"], "localhost"), "not an IPv4 loopback"),
    (_set(SOCKET0 + ["address"], "10.0.0.1"), "not an IPv4 loopback"),
    (_set(SOCKET0 + ["protocol"], "UDP"), "not a plain socket address"),
    (_set(LISTENER0 + ["address"], {"pipe": {"path": "/tmp/x"}}), "not a plain socket address"),
    (_set(SOCKET0 + ["port_value"], 9901), "admin address"),
    (_set(LISTENER0 + ["name"], ""), "not a plain name"),
    (_set(LISTENER0 + ["name"], "a b"), "not a plain name"),
    (_set(CLUSTER0 + ["name"], 7), "not a plain name"),
    (_set(CLUSTER0 + ["name"], "kfbatch3_x"), "starts with 'kfbatch'"),
    (_set(CLUSTER0 + ["outlier_detection"], {"kfbatch": 1}), "starts with 'kfbatch'"),
    (_set(CLUSTER0 + ["alt_stat_name"], "x"), "field 'alt_stat_name'"),
    (_set(CLUSTER0 + ["type"], "EDS"), "'EDS' is not 'STATIC'"),
    (_set(CLUSTER0 + ["cluster_type", "name"], "envoy.clusters.aggregate"), "name"),
    (_set(CLUSTER0 + ["cluster_type", "typed_config", "@type"], "type.googleapis.com/x"),
     "is not"),
    (_set(LISTENER0 + ["filter_chains", 0, "filters", 0, "name"], "envoy.filters.x"), "name"),
    (lambda d: route(d).update(weighted_clusters={"clusters": []}), "weighted_clusters"),
    (lambda d: route(d).pop("cluster") and route(d).update(cluster_header="x"),
     "cluster_header"),
    (_set(["static_resources", "secrets"], []), "only listeners and clusters"),
    (_set(["static_resources", "listeners"], {"a": 1}), "not a list"),
    (_set(["stats_sinks"], []), "top-level field 'stats_sinks'"),
    (_set(["admin", "access_log"], []), "admin"),
])
def test_what_the_merge_could_hide_is_not_batched(change, reason):
    text = edited(sidecars(1)["envoy/sidecars/shop/app00.yaml"], change)
    with pytest.raises(batch.NotBatchable, match=reason):
        batch.plan("envoy/x.yaml", text)


@pytest.mark.parametrize("rel,text,reason", [
    ("x.json", "{}", "not a .yaml file"),
    ("x.yaml", "a: [1, 2\n", "does not parse"),
    ("x.yaml", "- 1\n", "not a YAML mapping"),
    ("x.yaml", "", "not a YAML mapping"),
    ("x.yaml", "a: 1\n---\nb: 2\n", "does not parse"),
    # valid YAML, but not as kubeflat writes it: flow style, an anchor, a duplicate key
    ("x.yaml", "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}\n",
     "not written as kubeflat"),
    ("x.yaml", "admin: &a\n  address: {}\nnode: *a\n", "not written as kubeflat"),
    ("x.yaml", "admin:\n  address: {}\nadmin:\n  address: {}\n", "not written as kubeflat"),
])
def test_files_the_merge_cannot_read_exactly_are_not_batched(rel, text, reason):
    with pytest.raises(batch.NotBatchable, match=reason):
        batch.plan(rel, text)


def test_split_spreads_batches_over_the_cpus():
    assert batch.split(0, 64, 2) == []
    assert batch.split(1, 64, 2) == [(0, 1)]
    assert batch.split(10, 64, 2) == [(0, 5), (5, 10)]
    cuts = batch.split(1001, 64, 2)
    assert len(cuts) == 16 and cuts[0][0] == 0 and cuts[-1][1] == 1001
    assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
    assert max(e - s for s, e in cuts) <= 64
    assert batch.split(5, 1, 2) == [(i, i + 1) for i in range(5)]


# --- with the real envoy ----------------------------------------------------------------------

@pytest.fixture
def tmp_dir():
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "kf-batch-%d" % os.getpid())
    os.makedirs(path, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def check(items, tmp, batch_size=None):
    binary = checkers.envoy_binary(ENVOY)
    with ThreadPoolExecutor(max_workers=checkers.workers()) as pool:
        started = checkers.start_envoy_checks(binary, items, pool, tmp, batch_size=batch_size)
        return checkers.envoy_errors(started), checkers.envoy_stats(started)


def test_the_binary_is_the_real_envoy():
    binary = checkers.envoy_binary(ENVOY)
    assert binary != ENVOY and os.path.isfile(binary) and os.access(binary, os.X_OK)


def test_a_batch_of_rendered_sidecars_passes_in_one_process(tmp_dir):
    items = sidecars(8)
    entries = [([rel], text) for rel, text in sorted(items.items())]
    text = batch.merged_text([batch.plan(rel, t)[0] for rel, t in sorted(items.items())])
    verdict = checkers.check_batch(checkers.envoy_binary(ENVOY), tmp_dir, entries, text,
                                   "batch.yaml")
    assert verdict == {"failed": [], "processes": 1, "configs": len(items), "batched": True,
                       "unexplained": None}
    errors, stats = check(items, tmp_dir)
    assert errors == []
    assert stats["batched"] == stats["configs"] == len(items)
    assert stats["processes"] == stats["batches"] == min(checkers.workers(), len(items))


def _dup_cluster(doc):
    doc["static_resources"]["clusters"].append(copy.deepcopy(doc["static_resources"]["clusters"][0]))


def _dup_listener(name=None, port=None):
    def change(doc):
        listener = copy.deepcopy(doc["static_resources"]["listeners"][0])
        if name:
            listener["name"] = name
        if port:
            listener["address"]["socket_address"]["port_value"] = port
        doc["static_resources"]["listeners"].append(listener)
    return change


BAD = {
    "bad field": (_set(CLUSTER0 + ["outlier_detection", "colour"], "blue"), "colour"),
    "bad duration": (_set(CLUSTER0 + ["connect_timeout"], "soon"), "soon"),
    "missing cluster": (lambda d: route(d).update(cluster="shop_nowhere"),
                        "unknown cluster 'shop_nowhere'"),
    "duplicate cluster": (_dup_cluster, "duplicate cluster 'shop_app0"),
    "duplicate listener address": (_dup_listener(name="second"),
                                   "'second' has duplicate address '127.0.0.1:15001'"),
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_one_bad_file_in_a_batch_is_refused_by_name_the_others_not(what, tmp_dir):
    change, message = BAD[what]
    items = sidecars(6)
    bad_rel = "envoy/sidecars/shop/app03.yaml"
    items[bad_rel] = edited(items[bad_rel], change)
    batch.plan(bad_rel, items[bad_rel])  # batchable: the batch itself must catch it
    errors, stats = check(items, tmp_dir)
    assert [rels for rels, _ in errors] == [[bad_rel]]
    [(_, output)] = errors
    assert message in output and bad_rel in output and "kfbatch" not in output
    assert stats["batched"] == len(items) and stats["batch_refusals"] == 1
    assert stats["unexplained"] == 0


def test_a_duplicate_listener_name_gets_the_same_verdict_batched_and_alone(tmp_dir):
    # Envoy 1.40 accepts two static listeners of one name on two ports (validate mode):
    # batched, the two keep one (prefixed) name, so the verdict is the same.
    items = sidecars(4)
    rel = "envoy/sidecars/shop/app01.yaml"
    items[rel] = edited(items[rel], _dup_listener(port=15999))
    alone, _ = check(items, tmp_dir, batch_size=1)
    batched, stats = check(items, tmp_dir)
    assert stats["batched"] == len(items)
    assert [r for r, _ in batched] == [r for r, _ in alone]


def test_batched_verdicts_equal_per_file_verdicts_on_a_mixed_corpus(tmp_dir):
    items = sidecars(10)
    rels = sorted(items)
    for rel, what in zip(rels[1::2], sorted(BAD)):
        items[rel] = edited(items[rel], BAD[what][0])
    items.update(edge_configs())  # not batchable: alone
    items["envoy/hand.yaml"] = "admin: {address: {socket_address: {address: 127.0.0.1, " \
                               "port_value: 9901}}}\n"
    items["envoy/hand-bad.yaml"] = "admin: {address: {socket_address: {address: 127.0.0.1, " \
                                   "port_value: soon}}}\n"
    items["envoy/copy.yaml"] = items[rels[0]]  # identical texts: validated once
    alone, alone_stats = check(items, tmp_dir, batch_size=1)
    batched, stats = check(items, tmp_dir)
    refused = sorted(r for rels_, _ in alone for r in rels_)
    assert sorted(r for rels_, _ in batched for r in rels_) == refused
    assert len(refused) == len(BAD) + 1
    assert alone_stats["processes"] == alone_stats["configs"] == len(items) - 1
    assert stats["configs"] == len(items) - 1 and stats["batched"] == len(rels)
    assert stats["unexplained"] == 0
    for rels_, output in batched:
        assert rels_[0] in output


def test_a_refused_batch_whose_files_all_pass_alone_refuses_nothing_and_is_counted(
        tmp_dir, caplog):
    items = sidecars(3)
    entries = [([rel], text) for rel, text in sorted(items.items())]
    docs = [batch.plan(rel, t)[0] for rel, t in sorted(items.items())]
    merged = batch.merge(docs)
    # a batch Envoy refuses for a reason no file has (two files' clusters made one name)
    merged["static_resources"]["clusters"][1]["name"] = \
        merged["static_resources"]["clusters"][0]["name"]
    before = checkers.ENVOY_STATS["unexplained batch refusals"]
    with caplog.at_level(logging.WARNING, logger="kubeflat.envoy_batch"):
        verdict = checkers.check_batch(checkers.envoy_binary(ENVOY), tmp_dir, entries,
                                       dump_yaml(merged), "batch.yaml")
    assert verdict["failed"] == [] and "duplicate cluster" in verdict["unexplained"]
    assert verdict["processes"] == 1 + len(entries)
    assert checkers.ENVOY_STATS["unexplained batch refusals"] == before + 1
    assert "each pass alone" in caplog.text


def test_the_checker_key_names_the_batch_mode():
    binary = checkers.envoy_binary(ENVOY)
    batched = checkers.envoy_key(binary)
    assert "batched: up to %d configs" % checkers.ENVOY_BATCH_SIZE in batched
    assert "format %d" % batch.FORMAT in batched
    assert "one config per process" in checkers.envoy_key(binary, batch_size=1)
    assert len({batched, checkers.envoy_key(binary, batch_size=1),
                checkers.envoy_key(binary, batch_size=8)}) == 3
