# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of kubeflat.cluster.network_diagram: draw the network on the controller.

The documentation is plugins/modules/network_diagram.py. Everything runs in this
controller process; each host's last checked routes are kept in ``.<name>.routes.json`` beside
the picture; ``dot`` (Graphviz) is started only when the DOT source changed or an
output file is missing, so a converged run starts no process and reports changed=false.
The picture itself is built by plugins/module_utils/kubeflat_diagram.py.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import tempfile

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.plugins.action import ActionBase

__metaclass__ = type

from ansible_collections.kubeflat.cluster.plugins.module_utils import kubeflat_diagram as diagram

ARGUMENT_SPEC = dict(
    dest=dict(type="path", required=True),
    model=dict(type="dict", required=True),
    name=dict(type="str", default="network"),
    dot=dict(type="str", default="dot"),
    registers=dict(type="list", elements="str", default=list(diagram.LIVE_REGISTERS)),
    max_route_edges=dict(type="int", default=diagram.MAX_ROUTE_EDGES),
)


class _Fail(Exception):
    def __init__(self, msg):
        super(_Fail, self).__init__(msg)
        self.result = dict(failed=True, msg=msg)


def _plain(value):
    encoder = get_module_encoder("legacy", Direction.CONTROLLER_TO_MODULE)
    return json.loads(json.dumps(value, cls=encoder))


def _read(path, mode="r"):
    try:
        with open(path, mode) as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _model_hosts(model):
    """Names of the model's nodes, then its outside hosts."""
    return [h["name"] for h in list(model.get("nodes") or [])
            + list(model.get("outside_hosts") or [])]


def _registered(task_vars, model, registers):
    """{host: {register: result}} of the model's hosts, read from hostvars (no templating of
    anything else)."""
    hostvars = task_vars.get("hostvars") or {}
    out = {}
    for name in _model_hosts(model):
        try:
            host = hostvars[name]
        except KeyError:
            continue
        found = {}
        for reg in registers:
            try:
                value = host.get(reg)
            except Exception:  # pylint: disable=broad-except  # an undefined/unrenderable var
                value = None
            if value is not None:
                found[reg] = _plain(value)
        out[name] = found
    return out


def _draw(dot_bin, dot_text, dest, name):
    """Run ``dot`` once for SVG and PNG into a temporary directory in ``dest``; returns
    {suffix: bytes}."""
    tmp = tempfile.mkdtemp(prefix=".kubeflat-diagram-", dir=dest)
    try:
        src = os.path.join(tmp, name + ".dot")
        with open(src, "w", encoding="utf-8") as handle:
            handle.write(dot_text)
        argv = [dot_bin, "-Tsvg", "-o", os.path.join(tmp, name + ".svg"),
                "-Tpng", "-o", os.path.join(tmp, name + ".png"), src]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=False, timeout=300)
        if proc.returncode != 0:
            raise _Fail("%s failed (rc=%d) drawing %s: %s" % (
                argv[0], proc.returncode, name, proc.stderr.decode("utf-8", "replace").strip()))
        return {suffix: _read(os.path.join(tmp, name + suffix), "rb") for suffix in (".svg",
                                                                                     ".png")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".kubeflat-")
    with os.fdopen(fd, mode) as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


class ActionModule(ActionBase):
    """Draw the network (model + each host's last route check) as DOT, SVG and PNG."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        try:
            result.update(self._run(task_vars or {}))
        except _Fail as exc:
            result.update(exc.result)
        except diagram.DiagramError as exc:
            result.update(failed=True, msg="kubeflat.cluster.network_diagram: %s" % exc)
        return result

    def _run(self, task_vars):
        if self._connection.transport != "local":
            raise _Fail("kubeflat.cluster.network_diagram draws on the controller: run it with "
                        "delegate_to: localhost (the connection here is %s)"
                        % self._connection.transport)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(_plain(self._task.args))
        if validation.error_messages:
            raise _Fail("kubeflat.cluster.network_diagram: %s" % "; ".join(validation.error_messages))
        params = validation.validated_parameters
        dest, name, model = params["dest"], params["name"], params["model"]
        if not name or "/" in name or name.startswith("."):
            raise _Fail("kubeflat.cluster.network_diagram: name=%r must be a plain file name" % name)
        live = diagram.live_routes(_registered(task_vars, model, params["registers"]),
                                   params["registers"])
        memory = os.path.join(dest, ".%s.routes.json" % name)
        seen_before = _read(memory)
        seen = diagram.remember(diagram.load_seen(seen_before, _model_hosts(model)), live)
        seen_text = diagram.dump_seen(seen)
        remembered = [memory] if seen_before != seen_text else []
        graph = diagram.build_graph(model, seen, params["max_route_edges"])
        dot_text = diagram.to_dot(graph)
        counts, problems = diagram.summary(graph)
        paths = {s: os.path.join(dest, name + s) for s in (".dot", ".svg", ".png")}
        before = _read(paths[".dot"])
        stale = before != dot_text or not all(os.path.isfile(paths[s]) for s in (".svg", ".png"))
        changed_files = ([paths[s] for s in (".dot", ".svg", ".png")] if stale else []) + remembered
        warnings = []
        if stale and not self._task.check_mode:
            dot_bin = shutil.which(params["dot"])
            if not os.path.isdir(dest):
                os.makedirs(dest, 0o755)
            if dot_bin is None:
                # The source is still written; SVG/PNG follow on the first run with Graphviz.
                warnings.append("Graphviz `dot` (%s) not found: wrote %s only; install Debian "
                                "graphviz for network.svg and network.png"
                                % (params["dot"], paths[".dot"]))
                changed_files = ([paths[".dot"]] if before != dot_text else []) + remembered
                if before != dot_text:
                    _write(paths[".dot"], dot_text)
            else:
                drawn = _draw(dot_bin, dot_text, dest, name)
                for suffix in (".svg", ".png"):
                    _write(paths[suffix], drawn[suffix])
                _write(paths[".dot"], dot_text)   # last: a crash before it redraws next run
        if remembered and not self._task.check_mode:
            if not os.path.isdir(dest):
                os.makedirs(dest, 0o755)
            _write(memory, seen_text)
        out = dict(changed=bool(changed_files), svg=paths[".svg"], png=paths[".png"],
                   dot=paths[".dot"], changed_files=changed_files, routes=counts,
                   problems=problems, checked_hosts=sorted(live),
                   remembered_hosts=sorted(set(seen) - set(live)),
                   msg="network diagram: %s (%s)" % (paths[".svg"], ", ".join(
                       "%d %s" % (counts[s], s) for s in diagram.STATUSES if counts[s])
                       or "no routes"),
                   # Shown without -v, like debug: the run's output names the picture.
                   _ansible_verbose_always=True)
        if warnings:
            out["warnings"] = warnings
        if self._task.diff and before != dot_text:
            out["diff"] = [{"before_header": paths[".dot"], "after_header": paths[".dot"],
                            "before": before or "", "after": dot_text}]
        return out
