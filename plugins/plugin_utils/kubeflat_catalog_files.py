# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app catalog kept as files (``app_specs_apps_dir``): a directory of YAML files, each
holding one app (a mapping) or a list of apps, in the format of ``app_specs_apps``.

A large catalog kept in Ansible's variables is loaded, tagged and copied by ansible-playbook
on every run, whatever the tags (about 0.9 s for 1,000 apps on the 2-core VM), and templated
wherever it is referenced. Kept as files, only the controller-side code that needs it reads
it: the render action (``kubeflat.cluster.render_specs``, option ``apps_dir``), which keys its
render memo on the files' bytes (:func:`catalog_digest`) and parses them only when they
changed, and the preflight, which checks their shape before anything changes on any host
(:func:`catalog_dir_errors`) unless the last render of the same bytes passed.

Files: ``*.yml`` and ``*.yaml`` anywhere below the directory (sorted by their relative path),
hidden files and directories (``.name``) skipped. Apps from the files come after those of
``app_specs_apps``; both may be used. Every problem names ``app_specs_apps_dir``, the file and
the value.
"""

from __future__ import absolute_import, division, print_function

import hashlib
import json
import os

import yaml

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import SpecError

__metaclass__ = type

VAR = "app_specs_apps_dir"
SUFFIXES = (".yml", ".yaml")
CHECKED_NAME = ".kubeflat-catalog.json"    # in the render dir: the last catalog that rendered
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def catalog_paths(directory, var=VAR):
    """Relative paths of the catalog files below ``directory``, sorted; raises SpecError when
    ``directory`` is not an absolute path to a directory."""
    if not isinstance(directory, str) or not os.path.isabs(directory):
        raise SpecError(var, directory, "must be an absolute path (e.g. "
                        "\"{{ inventory_dir }}/apps.d\")")
    if not os.path.isdir(directory):
        raise SpecError(var, directory, "is not a directory")
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.endswith(SUFFIXES) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(root, name), directory))
    return sorted(found)


def read_catalog(directory, var=VAR):
    """``[(rel, bytes)]`` of every catalog file, in order."""
    out = []
    for rel in catalog_paths(directory, var):
        try:
            with open(os.path.join(directory, rel), "rb") as handle:
                out.append((rel, handle.read()))
        except (IOError, OSError) as exc:
            raise SpecError("%s/%s" % (var, rel), os.path.join(directory, rel),
                            "cannot be read: %s" % exc)
    return out


def catalog_digest(entries):
    """sha256 (hex) of ``[(rel, bytes)]``: names and contents, in order."""
    sha = hashlib.sha256()
    for rel, data in entries:
        sha.update(rel.encode("utf-8") + b"\0")
        sha.update(hashlib.sha256(data).digest())
    return sha.hexdigest()


def _shown(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_catalog(entries, var=VAR):
    """``(apps, origin)``: the apps of ``[(rel, bytes)]`` in order, and ``{app name: rel}``.

    A file holds one app (a mapping), a list of apps, or nothing (empty, comments only). Raises
    SpecError naming ``var/rel`` for text that is not UTF-8 YAML or not of that shape; the apps
    themselves are validated by :func:`kubeflat_catalog.validate_catalog`.
    """
    apps, origin = [], {}
    for rel, data in entries:
        where = "%s/%s" % (var, rel)
        try:
            doc = yaml.load(data.decode("utf-8"), Loader=_LOADER)
        except UnicodeDecodeError as exc:
            raise SpecError(where, rel, "is not UTF-8 text: %s" % exc)
        except yaml.YAMLError as exc:
            raise SpecError(where, rel, "is not valid YAML: %s" % " ".join(str(exc).split()))
        items = [] if doc is None else doc if isinstance(doc, list) else [doc]
        for index, app in enumerate(items):
            if not isinstance(app, dict):
                raise SpecError("%s[%d]" % (where, index) if isinstance(doc, list) else where,
                                app, "must be an app (a mapping with name, image, "
                                "ports) or a list of apps")
            name = app.get("name")
            if isinstance(name, str) and name not in origin:
                origin[name] = rel
            apps.append(app)
    return apps, origin


def load_catalog(directory, var=VAR):
    """``(apps, origin, digest)`` of the catalog directory (see :func:`parse_catalog`)."""
    entries = read_catalog(directory, var)
    apps, origin = parse_catalog(entries, var)
    return apps, origin, catalog_digest(entries)


def where_defined(error_var, origin, directory):
    """`` (defined in <file>)`` for an error about ``app_specs_apps[<name>]...`` whose app came
    from a catalog file, else an empty string."""
    if not origin or not isinstance(error_var, str) or not error_var.startswith("app_specs_apps["):
        return ""
    name = error_var[len("app_specs_apps["):].split("]", 1)[0]
    rel = origin.get(name)
    return " (app %s is defined in %s)" % (name, os.path.join(directory, rel)) if rel else ""


def checked_text(directory, digest):
    """The record the render action keeps (:data:`CHECKED_NAME`) once a catalog rendered."""
    return json.dumps({"directory": directory, "digest": digest}, sort_keys=True) + "\n"


def _checked_digest(render_dir, directory):
    try:
        with open(os.path.join(render_dir, CHECKED_NAME), "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("directory") == directory:
        return data.get("digest")
    return None


def catalog_dir_errors(directory, render_dir="", var=VAR):
    """Problems with the catalog directory, for the preflight (before any host changes): an
    unusable path, unreadable files, YAML that does not parse, entries that are not apps.
    Empty when ``directory`` is empty, or when its files hash to the catalog that the last
    successful render read (:data:`CHECKED_NAME` in ``render_dir``): then they are not parsed
    again. The apps' fields are validated by the render, as for ``app_specs_apps``."""
    if directory in ("", None):
        return []
    try:
        entries = read_catalog(directory, var)
        if render_dir and _checked_digest(render_dir, directory) == catalog_digest(entries):
            return []
        parse_catalog(entries, var)
    except SpecError as exc:
        return ["%s=%s: %s" % (exc.var, _shown(exc.value), exc.reason)]
    return []


__all__ = ["VAR", "SUFFIXES", "CHECKED_NAME", "catalog_paths", "read_catalog", "catalog_digest",
           "parse_catalog", "load_catalog", "where_defined", "checked_text",
           "catalog_dir_errors"]
