# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes objects as data, and their serialisation: the labels kubeflat puts on what it
renders, object metadata, deterministic YAML (sorted keys, literal blocks for embedded
configs; :class:`Dumped` keeps a read-only copy of the document beside its text), content
hashes for immutable ConfigMap names, and the apply order."""

from __future__ import absolute_import, division, print_function

import hashlib

import yaml

__metaclass__ = type

MANAGED_BY = {"app.kubernetes.io/managed-by": "kubeflat"}
NAME_LABEL = "app.kubernetes.io/name"
CHECKSUM_ANNOTATION = "kubeflat.io/config-checksum"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
ENVOY_CONFIG_PATH = "/etc/envoy/envoy.yaml"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Safe dumper that writes multi-line strings (embedded configs) as literal blocks."""


def _str_representer(dumper, data):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(doc):
    """One YAML document, deterministic (sorted keys, block style, no line folding)."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     width=1 << 16, allow_unicode=True)


class FrozenDict(dict):
    """A read-only ``dict`` (a :class:`Dumped` document): every mutating method raises."""

    __slots__ = ()

    def _read_only(self, *args, **kwargs):
        """Refuse a change: the text was dumped from this document as it is."""
        raise TypeError("a dumped document is read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return self.__class__, (dict(self),)


class FrozenList(list):
    """A read-only ``list`` (a :class:`Dumped` document): every mutating method raises."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = FrozenDict._read_only
    append = clear = extend = insert = pop = remove = reverse = sort = FrozenDict._read_only

    def __reduce__(self):
        return self.__class__, (list(self),)


_Dumper.add_representer(FrozenDict, _Dumper.represent_dict)
_Dumper.add_representer(FrozenList, _Dumper.represent_list)
_SCALARS = (str, int, float, bool, type(None))


class _NotPlain(Exception):
    """A value that is not plain data (dict, list, str, int, float, bool, None)."""


def _frozen(value, memo):
    """A read-only copy of plain data ``value``; an object met twice is copied once (``memo``:
    id -> copy), so the copy dumps exactly as the original (same anchors, if any)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is not dict and kind is not list:
        raise _NotPlain(kind.__name__)
    found = memo.get(id(value))
    if found is None:
        if kind is dict:
            for key in value:
                if type(key) not in _SCALARS:
                    raise _NotPlain(type(key).__name__)
            found = FrozenDict((key, _frozen(item, memo)) for key, item in value.items())
        else:
            found = FrozenList(_frozen(item, memo) for item in value)
        memo[id(value)] = found
    return found


def frozen(doc):
    """A read-only copy of ``doc`` (:class:`FrozenDict`, :class:`FrozenList`, scalars), or None
    when ``doc`` is not plain data (any other type, a cycle)."""
    try:
        return _frozen(doc, {})
    except (_NotPlain, RecursionError):
        return None


class Dumped:
    """One YAML document as kubeflat writes it: ``text`` is :func:`dump_yaml` of ``doc``, a
    read-only copy of the document taken before dumping (None when the document is not plain
    data: then only ``text`` is known). Nothing can change ``doc`` afterwards, so ``text ==
    dump_yaml(doc)`` holds for as long as both exist: a reader of ``text`` may use ``doc``
    instead of parsing it (kubeflat_envoy_batch.plan)."""

    __slots__ = ("doc", "text")

    def __init__(self, doc):
        self.doc = frozen(doc)
        self.text = dump_yaml(doc if self.doc is None else self.doc)


class RenderedFiles(dict):
    """``{relative path: text}`` of a render, and ``dumped``: ``{relative path:`` :class:`Dumped`
    ``}`` for the texts dumped from one document in that render (the Envoy configs).
    ``emit(rel, text)``, when given, is called each time a file is set (a caller can start
    checking a file while the rest is rendered)."""

    def __init__(self, *args, **kwargs):
        self.emit = kwargs.pop("emit", None)
        super(RenderedFiles, self).__init__(*args, **kwargs)
        self.dumped = {}

    def __setitem__(self, rel, text):
        super(RenderedFiles, self).__setitem__(rel, text)
        if self.emit is not None:
            self.emit(rel, text)

    def add_dumped(self, rel, dumped):
        """Set ``rel`` to ``dumped.text`` and remember its document."""
        self[rel] = dumped.text
        self.dumped[rel] = dumped


def dump_all(docs):
    """Several documents as one multi-document YAML file."""
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                         width=1 << 16, allow_unicode=True, explicit_start=True)


def content_hash(text, length=10):
    """Short sha256 of a text (used in immutable ConfigMap names and checksums)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def object_meta(name, namespace, labels=None, annotations=None):
    """``metadata`` with kubeflat's managed-by label (namespace omitted when None)."""
    meta = {"name": name, "labels": dict(MANAGED_BY, **(labels or {}))}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def namespace_manifest(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": object_meta(name, None)}


def manifest_order(paths):
    """Apply order: namespaces first, then everything else (sorted)."""
    return sorted(paths, key=lambda p: (not p.endswith("/namespace.yaml"),
                                        "envoy-ingress" not in p, p))


__all__ = ["MANAGED_BY", "NAME_LABEL", "CHECKSUM_ANNOTATION", "CONTROL_PLANE_LABEL",
           "ENVOY_CONFIG_PATH", "Dumped", "FrozenDict", "FrozenList", "RenderedFiles",
           "dump_yaml", "dump_all", "content_hash", "frozen", "object_meta",
           "namespace_manifest", "manifest_order"]
