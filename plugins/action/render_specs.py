# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of kubeflat.cluster.render_specs: render, validate and write on the controller.

The documentation (options, return values) is plugins/modules/render_specs.py.
Everything runs in this controller process: no module is shipped, no Python is started per
call. The logic lives in plugins/module_utils (kubeflat_specs / kubeflat_edge build the files,
kubeflat_checkers runs the real checkers and keeps the validation record); this file gathers
the inputs, decides what to validate and write, and reports.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import tempfile
import shutil
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.plugins.action import ActionBase
from ansible.template import is_trusted_as_template

__metaclass__ = type

# The renderer's code: the memo key covers every kubeflat_*.py in both (checkers.code_key).
_CODE_DIRS = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", sub)
                   for sub in ("module_utils", "plugin_utils"))

from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_checkers as checkers
from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_catalog_files as catalog_files
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_check_child import (
    CheckChild, ChildFailed)
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_staging import Staging
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_inputs import (
    plain_data, untemplated)
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_edge import render_edge
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import EnvoyError
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import manifest_order
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import SpecError
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps

ARGUMENT_SPEC = dict(
    dest=dict(type="path", required=True),
    part=dict(type="str", choices=["apps", "edge"], default="apps"),
    apps=dict(type="list", elements="dict", default=[]),
    apps_var=dict(type="str", default=""),
    apps_dir=dict(type="str", default=""),
    settings=dict(type="dict", default={}),
    ingress=dict(type="dict", default={}),
    coredns=dict(type="dict"),
    model=dict(type="dict", required=True),
    kubernetes_validate=dict(type="str", default=""),
    kube_version=dict(type="str", default="1.37.0"),
    envoy=dict(type="str", default=""),
)
MUTUALLY_EXCLUSIVE = [["apps", "apps_var"]]
KINDS = (("manifests", "specs/"), ("envoy", "envoy/"))


FORK_MIN_FILES = 50   # below this, checking the manifests in a forked child is not worth it


def worth_forking(count):
    """True when ``count`` manifest files are enough to check them in a forked child process."""
    return count >= FORK_MIN_FILES


class _Fail(Exception):
    def __init__(self, msg, **extra):
        super(_Fail, self).__init__(msg)
        self.result = dict(extra, failed=True, msg=msg)


def _spec_fail(exc, where=""):
    """The refusal of an invalid catalog entry or setting (``exc``: SpecError, EnvoyError),
    naming the variable; ``where`` is appended to the message (the file of an app)."""
    return _Fail("kubeflat app specs are invalid: %s%s" % (exc, where), variable=exc.var,
                 value=str(exc.value))


def _part_paths(dest, part):
    """``(index, validation record)`` paths of a part in the render dir."""
    return os.path.join(dest, ".kubeflat-%s.json" % part), \
        os.path.join(dest, checkers.record_name(part))


def _read(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _write(path, text):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kubeflat-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def _check_binary(path, what, var):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise _Fail("%s not found at %s: run `make setup` (it is installed in the project .venv) "
                    "or set %s: false to skip this validation" % (what, path, var))


def _plain(args):
    """The task args as plain JSON data, exactly as a module would have received them."""
    encoder = get_module_encoder("legacy", Direction.CONTROLLER_TO_MODULE)
    return json.loads(json.dumps(args, cls=encoder))


def _shown(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _render(params, origin=None, emit=None):
    """The part's files; ``origin`` ({app name: file}) names the catalog file of an app that
    a refusal is about; ``emit(rel, text)`` is called as each file is rendered."""
    try:
        if params["part"] == "apps":
            return render_apps(params["apps"], params["settings"], params["model"], emit=emit)
        return render_edge(params["apps"], params["settings"], params["ingress"],
                           params["coredns"], params["model"])
    except (SpecError, EnvoyError) as exc:
        raise _spec_fail(exc, catalog_files.where_defined(exc.var, origin, params["apps_dir"]))


class _CatalogDir:
    """The catalog files of ``apps_dir`` (none when it is empty): read once, hashed for the
    render memo, parsed only when the render memo misses."""

    def __init__(self, directory, dest):
        self.directory = directory
        self.dest = dest
        try:
            self.entries = catalog_files.read_catalog(directory) if directory else []
        except SpecError as exc:
            raise _spec_fail(exc)
        self.digest = catalog_files.catalog_digest(self.entries) if directory else None

    def apps(self):
        """``(apps, {app name: file})`` of the files."""
        try:
            return catalog_files.parse_catalog(self.entries)
        except SpecError as exc:
            raise _spec_fail(exc)

    def keep_checked(self):
        """Record in the render dir that these files rendered (the preflight then skips
        parsing them again: kubeflat_catalog_files.catalog_dir_errors)."""
        if not self.directory:
            return
        path = os.path.join(self.dest, catalog_files.CHECKED_NAME)
        text = catalog_files.checked_text(self.directory, self.digest)
        if _read(path) != text:
            _write(path, text)


class _Checkers:
    """The configured checkers of one call: their keys, and validation of a set of files."""

    def __init__(self, params):
        self.kube = params["kubernetes_validate"]
        self.kube_version = params["kube_version"]
        self.envoy = params["envoy"]
        self.in_process = False
        self.envoy_binary = None
        self._validator = None
        self.keys = {"manifests": None, "envoy": None}
        if self.kube:
            _check_binary(self.kube, "kubernetes-validate", "app_specs_validate_manifests")
            self.in_process = checkers.same_python_script(self.kube, "kubernetes_validate.__main__")
            self.keys["manifests"] = checkers.kube_key(self.kube_version) if self.in_process \
                else checkers.kube_cli_key(self.kube, self.kube_version)
        if self.envoy:
            _check_binary(self.envoy, "envoy", "app_specs_validate_envoy")
            self.envoy_binary = checkers.envoy_binary(self.envoy)
            self.keys["envoy"] = checkers.envoy_key(self.envoy_binary)

    def _kube_validator(self):
        if self._validator is None:
            try:
                self._validator = checkers.KubeValidator(self.kube_version, strict=True)
            except checkers.CheckerError as exc:
                raise _Fail(str(exc))
        return self._validator

    def _check_manifests(self, manifests):
        if not manifests:
            return []
        if self.in_process:
            validator = self._kube_validator()
            return [e for rel in sorted(manifests) for e in validator.check(rel, manifests[rel])]
        return checkers.check_manifests_cli(self.kube, self.kube_version, manifests)

    def _make_check(self):
        """In a check child: the in-process checker's ``check(rel, text)``."""
        return checkers.KubeValidator(self.kube_version, strict=True).check

    def manifest_child(self, count):
        """A forked child to check ``count`` manifest files in (:class:`CheckChild`), so that
        they do not wait behind rendering or the Envoy merge for this process's one interpreter
        lock (in-process checker, enough files, two CPUs), else None. Call it before any thread
        is started here."""
        if not (self.in_process and worth_forking(count)) or \
                checkers.workers() < 2 or not hasattr(os, "fork"):
            return None
        return CheckChild(self._make_check)

    @staticmethod
    def _collect(child, manifests):
        """Error lines of ``manifests`` from ``child``, after sending each one it has not got
        as it is now; a child that did not check them all is a refusal of its own (nothing
        passes unchecked). Only these files' verdicts count (the last text sent of each)."""
        for rel in sorted(manifests):
            if child.sent.get(rel) != manifests[rel]:
                child.send(rel, manifests[rel])
        try:
            verdicts = child.finish()
        except ChildFailed as exc:
            raise _Fail("kubernetes-validate --strict: %s; nothing was written" % exc, rc=1)
        return [line for rel in sorted(manifests) for line in verdicts.get(rel, [])]

    def validate(self, manifests, configs, dumped=None, after_fork=None, child=None):
        """Validate ``{rel: text}`` of each kind; raise _Fail naming what was refused.
        ``dumped``: the renderer's ``{rel: Dumped}`` (an Envoy config's document, not parsed
        again); ``after_fork``: called once the manifest check is forked, before any thread
        starts here (it may start threads of its own); ``child``: a manifest check child
        already fed (some of) the manifests while they were rendered."""
        tmp = tempfile.mkdtemp(prefix="kubeflat-validate-")
        if child is None and configs:
            child = self.manifest_child(len(manifests))
        try:
            if after_fork is not None:
                after_fork()
            with ThreadPoolExecutor(max_workers=checkers.workers()) as pool:
                try:
                    started = checkers.start_envoy_checks(self.envoy_binary, configs, pool,
                                                          tmp, dumped=dumped) if configs else []
                    # Meanwhile, the child or this thread checks the manifests.
                    if child is not None:
                        pending, child = child, None
                        errors = self._collect(pending, manifests)
                    else:
                        errors = self._check_manifests(manifests)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                if errors:  # refused already: do not wait for every Envoy check
                    pool.shutdown(wait=True, cancel_futures=True)
                    refused = []
                else:
                    refused = checkers.envoy_errors(started)
        finally:
            if child is not None:
                child.abandon()
            shutil.rmtree(tmp, ignore_errors=True)
        if errors:
            raise _Fail("kubernetes-validate --strict refused the rendered manifests; nothing "
                        "was written:\n%s" % "\n".join(errors), rc=1)
        if refused:
            raise _Fail("\n".join("envoy --mode validate refused %s; nothing was written:\n%s"
                                  % (", ".join(rels), output) for rels, output in refused), rc=1)


class ActionModule(ActionBase):
    """Render a part of the catalog, validate what is not known good, write what changed."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False
    _catalog_dir = None

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        try:
            result.update(self._run(task_vars))
            if not self._task.check_mode and self._catalog_dir is not None:
                self._catalog_dir.keep_checked()
        except _Fail as exc:
            result.update(exc.result)
        return result

    def _catalog(self, name, task_vars):
        """The catalog in variable ``name``, as templating it would give.

        Read from the task's variables, so Ansible does not template a 1,000-app list into the
        task arguments (and send it back with the result): data with nothing to template is
        used as it is (kubeflat_inputs.untemplated; possibly tagged, which serialises to the
        same JSON: the memo key needs no copy, a render gets plain_data), anything else is
        templated here.
        """
        task_vars = task_vars or {}
        if name not in task_vars:
            raise _Fail("kubeflat.cluster.render_specs: apps_var names %s, which is not defined"
                        % name, variable=name)
        found, apps = untemplated(task_vars[name], task_vars, is_trusted_as_template,
                                  plain=False)
        if not found:
            apps = _plain(self._templar.template(task_vars[name]))
        if not isinstance(apps, list) or not all(isinstance(app, dict) for app in apps):
            bad = apps if not isinstance(apps, list) else \
                next(app for app in apps if not isinstance(app, dict))
            raise _Fail("kubeflat app specs are invalid: %s must be a list of mappings, got %s"
                        % (name, _shown(bad)), variable=name, value=_shown(bad))
        return apps

    def _run(self, task_vars=None):
        if self._connection.transport != "local":
            raise _Fail("kubeflat.cluster.render_specs renders on the controller: run it with "
                        "delegate_to: localhost (the connection here is %s)"
                        % self._connection.transport)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE) \
            .validate(_plain(self._task.args))
        if validation.error_messages:
            raise _Fail("kubeflat.cluster.render_specs: %s" % "; ".join(validation.error_messages))
        params = validation.validated_parameters
        if params["apps_var"]:
            params["apps"] = self._catalog(params["apps_var"], task_vars)
        self._catalog_dir = catalog_dir = _CatalogDir(params["apps_dir"], params["dest"])
        dest, part = params["dest"], params["part"]
        tools = _Checkers(params)
        index_path, record_path = _part_paths(dest, part)
        index_text = _read(index_path)
        record_text = _read(record_path)
        record = checkers.load_record(record_text)
        inputs = {k: params[k] for k in ("part", "apps", "settings", "ingress", "coredns",
                                         "model")}
        if catalog_dir.digest:   # the files' bytes, not their parse: a warm run parses nothing
            inputs["apps_dir"] = [catalog_dir.directory, catalog_dir.digest]
        key = checkers.inputs_key(checkers.code_key(*_CODE_DIRS), inputs)

        memo_key, memo_files = checkers.load_render_memo(record_text)
        if memo_key == key and self._unchanged(dest, memo_files, record, tools, index_text):
            # Same inputs and code as the last render, every file on disk is the rendered and
            # validated bytes: rendering again would change nothing and validate nothing.
            return _result(dest, sorted(memo_files), [], [],
                           {kind: 0 for kind, _unused in KINDS},
                           {kind: len([r for r in memo_files if r.startswith(prefix)])
                            if tools.keys[kind] else 0 for kind, prefix in KINDS})

        if params["apps_var"]:
            params["apps"] = plain_data(params["apps"])  # the builders want plain types
        origin = None
        if catalog_dir.directory:  # the files' apps come after the variable's
            dir_apps, origin = catalog_dir.apps()
            params["apps"] = list(params["apps"]) + dir_apps
        # A large catalog's manifests (one file per app) are checked in a child process while
        # the rest is rendered: forked now, before any thread starts here, and fed by ``emit``.
        child = tools.manifest_child(len(params["apps"])) if part == "apps" else None
        try:
            return self._render_check_write(params, tools, record, key, index_text,
                                            record_text, origin, child)
        finally:
            if child is not None:
                child.abandon()   # only when not collected (an error before the check)

    def _render_check_write(self, params, tools, record, key, index_text, record_text, origin,
                            child):
        """Render (feeding ``child`` the manifests to check as they come), validate what is
        not known good, write what changed; the result."""
        dest = params["dest"]
        index_path, record_path = _part_paths(dest, params["part"])
        assessed = {}

        def assess(rel, text):
            """``(before, sha, {kind: must be checked})`` of a rendered file."""
            before = _read(os.path.join(dest, rel))
            sha = checkers.digest(text)
            check = {}
            for kind, prefix in KINDS:
                if rel.startswith(prefix) and tools.keys[kind]:
                    check[kind] = before != text or not checkers.trusted(
                        record, kind, tools.keys[kind], rel, sha)
            return before, sha, check

        def emit(rel, text):
            assessed[rel] = found = (text,) + assess(rel, text)
            if child is not None and found[3].get("manifests"):
                child.send(rel, text)

        files = _render(params, origin, emit=emit)
        previous = []
        if index_text:
            try:
                previous = [p for p in json.loads(index_text) if isinstance(p, str)]
            except ValueError:
                previous = []

        changed, diffs = [], []
        to_check = {"manifests": {}, "envoy": {}}
        passed = {"manifests": {}, "envoy": {}}
        digests = {}
        for rel in sorted(files):
            text = files[rel]
            found = assessed.get(rel)
            # A file set twice, or not emitted (another renderer), is assessed as it is now.
            before, sha, check = found[1:] if found and found[0] == text else assess(rel, text)
            if before != text:
                changed.append(rel)
                diffs.append({"before_header": rel, "after_header": rel,
                              "before": before or "", "after": text})
            digests[rel] = sha
            for kind, must in check.items():
                passed[kind][rel] = sha
                if must:
                    to_check[kind][rel] = text
        removed = []
        for rel in sorted(set(previous) - set(files)):
            path = os.path.join(dest, rel)
            # Only plain files inside dest that an earlier run of this part wrote.
            if os.path.normpath(rel) == rel and not rel.startswith("..") and os.path.isfile(path):
                removed.append(rel)
                diffs.append({"before_header": rel, "after_header": "(removed)",
                              "before": _read(path) or "", "after": ""})

        new_index = json.dumps(sorted(files), indent=1) + "\n"
        new_record = checkers.dump_record(
            {kind: (tools.keys[kind], passed[kind]) for kind, _unused in KINDS}, key, digests)
        # The changed files are staged in dest while the checkers run, renamed into place once
        # they passed; a refusal (or any error) removes them: nothing is written.
        staging = None if self._task.check_mode or not changed else Staging(
            dest, [(os.path.join(dest, rel), files[rel]) for rel in changed])
        try:
            if to_check["manifests"] or to_check["envoy"]:
                tools.validate(to_check["manifests"], to_check["envoy"],
                               dumped=getattr(files, "dumped", None),
                               after_fork=staging.start if staging else None, child=child)
            if staging is not None:
                staging.commit(_write)
        except BaseException:
            if staging is not None:
                staging.discard()
            raise
        if not self._task.check_mode:
            for rel in removed:
                os.unlink(os.path.join(dest, rel))
            if index_text != new_index:
                _write(index_path, new_index)
            # Last: a crash before this line leaves files that the next run validates again.
            if record_text != new_record:
                _write(record_path, new_record)

        out = _result(dest, sorted(files), changed, removed,
                      {kind: len(to_check[kind]) for kind, _unused in KINDS},
                      {kind: len(passed[kind]) - len(to_check[kind]) for kind, _unused in KINDS})
        if self._task.diff and diffs:
            out["diff"] = diffs
        return out

    @staticmethod
    def _unchanged(dest, memo_files, record, tools, index_text):
        """The memo's files are all on disk unchanged, listed in the index, and passed the
        checkers configured now (same keys)."""
        if index_text != json.dumps(sorted(memo_files), indent=1) + "\n":
            return False
        for rel, sha in memo_files.items():
            for kind, prefix in KINDS:
                if rel.startswith(prefix) and tools.keys[kind] and \
                        not checkers.trusted(record, kind, tools.keys[kind], rel, sha):
                    return False
        return checkers.unchanged_on_disk(dest, memo_files)


def _result(dest, files, changed, removed, validated, before):
    manifests = manifest_order([r for r in files if r.startswith("specs/")])
    return dict(
        changed=bool(changed or removed),
        files=files,
        changed_files=changed,
        removed_files=removed,
        manifests=[os.path.join(dest, r) for r in manifests],
        envoy_configs=[os.path.join(dest, r) for r in files if r.startswith("envoy/")],
        validated=validated,
        validated_before=before,
    )
