# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes objects as data, and their serialisation: the labels kubeflat puts on what it
renders, object metadata, deterministic YAML (sorted keys, literal blocks for embedded
configs), content hashes for immutable ConfigMap names, and the apply order."""

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
           "ENVOY_CONFIG_PATH", "dump_yaml", "dump_all", "content_hash", "object_meta",
           "namespace_manifest", "manifest_order"]
