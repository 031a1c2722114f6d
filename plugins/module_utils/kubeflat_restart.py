# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restart an app now (``-e app_specs_restart=web,catalog``), deterministically.

Like ``kubectl rollout restart``, a restart is a pod-template annotation
(:data:`RESTART_ANNOTATION`) with the time of the request; a new value rolls the pods. To keep
every later render byte-identical, the value is not made up at render time: it is kept in a
small record beside the rendered specs (``<render dir>/app-restarts.yml``, ``{app: time}``) and
read back on every run. A run naming an app sets its time to now; a run naming none changes
nothing, so the annotation stays in the rendered spec (and in the cluster, server-side applied
by the same field manager) until the next restart. Pure functions, no I/O.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_errors import InputError

__metaclass__ = type

RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
VAR = "app_specs_restart"
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class RestartError(InputError):
    """A restart request naming something that is not an app of the catalog."""


def restart_names(raw, var=VAR):
    """``"web, catalog"`` (or a list) -> ``["web", "catalog"]``; empty means none."""
    if raw is None:
        return []
    if isinstance(raw, (list, tuple)):
        parts = raw
    elif isinstance(raw, str):
        parts = raw.split(",")
    else:
        raise RestartError(var, raw, "must be app names separated by commas")
    names = []
    for part in parts:
        if not isinstance(part, str):
            raise RestartError(var, part, "must be app names separated by commas")
        if part.strip() and part.strip() not in names:
            names.append(part.strip())
    return names


def restart_record(apps, raw, previous, now, var=VAR):
    """The restart record after this run: ``{app: time}``.

    ``apps``: the catalog (``app_specs_apps``); ``raw``: the apps to restart now; ``previous``:
    the record read back (None or ``{}`` on the first run); ``now``: the time of this request
    (RFC 3339). Apps no longer in the catalog drop out; unknown names are refused.
    """
    known = [a.get("name") for a in apps or [] if isinstance(a, dict)]
    names = restart_names(raw, var)
    for name in names:
        if name not in known:
            raise RestartError(var, name, "no such app in app_specs_apps (apps: %s)"
                               % (", ".join(str(k) for k in known) or "none"))
    if names and not (isinstance(now, str) and _TIME.match(now)):
        raise RestartError("now", now, "must be an RFC 3339 time like 2026-12-01T10:00:00Z")
    record = {}
    for name, stamp in sorted((previous or {}).items()):
        if name in known and isinstance(stamp, str) and _TIME.match(stamp):
            record[name] = stamp
    for name in names:
        record[name] = now
    return record


def restart_annotations(record, app_name):
    """The pod-template annotations of one app from the record (empty when never restarted)."""
    stamp = (record or {}).get(app_name)
    return {RESTART_ANNOTATION: stamp} if stamp else {}


def record_text(record):
    """The record file: a comment and one ``app: time`` line per app, sorted."""
    lines = ["# Managed by kubeflat (app_specs_restart): the last requested restart of each app.",
             "# Rendered into the pod template as %s; deleting a line rolls that app once."
             % RESTART_ANNOTATION]
    lines += ["%s: '%s'" % (name, record[name]) for name in sorted(record)]
    return "\n".join(lines) + "\n"
