"""Unit tests for the documents the renderer hands to the Envoy batch planner
(kubeflat_manifests.Dumped, kubeflat_envoy_batch.plan with a document): a document is used
instead of parsing a file only when the file's text is exactly the text dumped from it, it cannot
change after that dump, and planning and merging from it give what parsing the text gives."""
import copy
import importlib.util
import os

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_envoy_batch as batch
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_edge import render_edge
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import (
    Dumped, FrozenDict, FrozenList, RenderedFiles, dump_yaml, frozen)
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps

from lab_catalog import LAB, ROOT, lab_model

MODEL = lab_model()


def _bench_catalog(count):
    """The bench's generated catalog (tests/bench/bench_specs.py), ``count`` apps."""
    path = os.path.join(ROOT, "tests", "bench", "bench_specs.py")
    spec = importlib.util.spec_from_file_location("kubeflat_bench_specs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.catalog(count)


def _render(catalog, settings):
    """Both parts of ``catalog``: ``[(files, settings)]`` as the action gets them."""
    return [render_apps(copy.deepcopy(catalog), settings, MODEL),
            render_edge(copy.deepcopy(catalog), settings, {}, {}, MODEL)]


CATALOGS = {"lab": (LAB["app_specs_apps"], {"namespace": LAB["app_specs_namespace"]}),
            "bench": (_bench_catalog(120), {})}


@pytest.fixture(scope="module", params=sorted(CATALOGS))
def rendered(request):
    """``[RenderedFiles]`` of both parts of the lab or the bench catalog."""
    return _render(*CATALOGS[request.param])


def _planned(rel, text, dumped=None):
    """``("ok", doc, key)`` of plan, or ``("alone", message)``."""
    try:
        doc, key = batch.plan(rel, text, dumped)
    except batch.NotBatchable as exc:
        return "alone", str(exc)
    return "ok", doc, key


# --- what the renderer hands over ----------------------------------------------------------

def test_every_rendered_envoy_config_comes_with_the_document_of_its_text(rendered):
    for files in rendered:
        assert isinstance(files, RenderedFiles)
        envoy = sorted(rel for rel in files if rel.startswith("envoy/"))
        assert envoy and sorted(files.dumped) == envoy
        for rel in envoy:
            dumped = files.dumped[rel]
            assert files[rel] is dumped.text
            assert isinstance(dumped.doc, FrozenDict)
            assert dump_yaml(dumped.doc) == files[rel]
            assert yaml.safe_load(files[rel]) == dumped.doc


def test_planning_from_the_document_equals_planning_from_the_text(rendered):
    batchable = 0
    for files in rendered:
        for rel, dumped in files.dumped.items():
            from_text = _planned(rel, files[rel])
            from_doc = _planned(rel, files[rel], dumped)
            assert from_doc == from_text, rel
            if from_doc[0] == "ok":
                batchable += 1
                assert from_doc[1] is dumped.doc    # the document itself: nothing parsed
    assert batchable > 0


def test_a_batch_merged_from_documents_is_byte_identical_to_one_merged_from_texts(rendered):
    groups = {}
    for files in rendered:
        for rel, dumped in sorted(files.dumped.items()):
            planned = _planned(rel, files[rel], dumped)
            if planned[0] == "ok":
                groups.setdefault(planned[2], []).append((rel, files[rel], dumped))
    assert groups
    for members in groups.values():
        members = members[:batch.BATCH_SIZE]
        from_docs = [batch.plan(rel, text, dumped)[0] for rel, text, dumped in members]
        from_texts = [batch.plan(rel, text)[0] for rel, text, unused in members]
        assert batch.merged_text(from_docs) == batch.merged_text(from_texts)


# --- when the document is not used ------------------------------------------------------------

def _sidecars():
    files = render_apps(copy.deepcopy(LAB["app_specs_apps"]),
                        {"namespace": LAB["app_specs_namespace"]}, MODEL)
    return files, sorted(files.dumped)


def test_a_document_whose_text_is_not_the_files_is_not_used():
    files, rels = _sidecars()
    first, second = rels[0], rels[1]
    other = files.dumped[first]
    assert batch.dumped_doc(files[second], other) is None
    planned = _planned(second, files[second], other)
    assert planned == _planned(second, files[second])
    assert planned[1] is not other.doc and planned[1] == yaml.safe_load(files[second])
    edited = files[first].replace("connect_timeout: 1s", "connect_timeout: 2s")
    assert edited != files[first]
    doc = batch.plan(first, edited, other)[0]
    assert doc == yaml.safe_load(edited) and doc != other.doc


def test_an_equal_text_uses_the_document_and_anything_else_is_not_a_dumped_document():
    files, rels = _sidecars()
    dumped = files.dumped[rels[0]]
    same = "".join(list(files[rels[0]]))            # equal, another object
    assert same is not files[rels[0]]
    assert batch.dumped_doc(same, dumped) is dumped.doc
    for impostor in (dumped.doc, {"doc": dumped.doc, "text": same}, same, None):
        assert batch.dumped_doc(same, impostor) is None


def _mutations():
    return {
        "set item": lambda d, l: d.__setitem__("admin", {}),
        "del item": lambda d, l: d.__delitem__("admin"),
        "update": lambda d, l: d.update(admin={}),
        "pop": lambda d, l: d.pop("admin"),
        "popitem": lambda d, l: d.popitem(),
        "setdefault": lambda d, l: d.setdefault("extra", 1),
        "clear": lambda d, l: d.clear(),
        "in-place or": lambda d, l: d.__ior__({"extra": 1}),
        "list set item": lambda d, l: l.__setitem__(0, {}),
        "list del item": lambda d, l: l.__delitem__(0),
        "append": lambda d, l: l.append({}),
        "extend": lambda d, l: l.extend([{}]),
        "insert": lambda d, l: l.insert(0, {}),
        "list pop": lambda d, l: l.pop(),
        "remove": lambda d, l: l.remove(l[0]),
        "reverse": lambda d, l: l.reverse(),
        "sort": lambda d, l: l.sort(key=str),
        "list clear": lambda d, l: l.clear(),
        "in-place add": lambda d, l: l.__iadd__([{}]),
        "in-place mul": lambda d, l: l.__imul__(2),
    }


@pytest.mark.parametrize("what", sorted(_mutations()))
def test_a_dumped_document_cannot_change_after_its_dump(what):
    files, rels = _sidecars()
    dumped = files.dumped[rels[0]]
    listeners = dumped.doc["static_resources"]["listeners"]
    assert isinstance(listeners, FrozenList) and listeners
    with pytest.raises(TypeError, match="read-only"):
        _mutations()[what](dumped.doc, listeners)
    assert dump_yaml(dumped.doc) == dumped.text == files[rels[0]]


def test_only_plain_data_is_kept_and_the_text_is_the_plain_dump():
    cyclic = {"a": 1}
    cyclic["self"] = cyclic
    for doc in ({"a": (1, 2)}, {"a": {1, 2}}, {(1, 2): "tuple key"}, cyclic):
        dumped = Dumped(doc)
        assert dumped.doc is None and frozen(doc) is None
        assert dumped.text == dump_yaml(doc)
        assert batch.dumped_doc(dumped.text, dumped) is None

    class Name(str):
        """Not plain: the dumper refuses it as it did before."""

    with pytest.raises(yaml.YAMLError):
        Dumped({"a": Name("x")})


def test_a_shared_object_dumps_as_before_and_stays_shared():
    shared = {"timeout": "1s"}
    doc = {"a": shared, "b": shared, "c": [shared]}
    dumped = Dumped(doc)
    assert dumped.text == dump_yaml(doc) and "&id001" in dumped.text
    assert dumped.doc["a"] is dumped.doc["b"] is dumped.doc["c"][0]
    assert dumped.doc == doc and dumped.doc["a"] is not shared


def test_a_dumped_document_copies_to_an_equal_read_only_document():
    files, rels = _sidecars()
    doc = files.dumped[rels[0]].doc
    for copied in (copy.copy(doc), copy.deepcopy(doc)):
        assert copied == doc and isinstance(copied, FrozenDict)
        assert dump_yaml(copied) == files[rels[0]]
