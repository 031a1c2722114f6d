# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A checker in a forked child process, fed files while the parent goes on working.

The render action checks the manifests with kubernetes-validate in-process (Python: one
interpreter lock). On two cores, a child process can check them while the parent renders
the rest of the catalog and runs the Envoy checks: :class:`CheckChild` forks (before the
parent starts any thread, as fork requires), and the parent sends each file as soon as it
is rendered (:meth:`CheckChild.send`; a writer thread keeps the parent from blocking on a
full pipe). :meth:`CheckChild.finish` returns the error lines of every file sent (of the
last text sent under each path); a child that fails, dies or reports nonsense is a refusal of
its own: nothing passes unchecked.

Parent to child: frames of a 4-byte big-endian length and the UTF-8 JSON ``[rel, text]``;
a zero length ends the stream. Child to parent, once, at the end: JSON
``{"errors": [[rel, [line, ...]], ...]}`` or ``{"failed": "reason"}``.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import queue
import struct
import threading

__metaclass__ = type

_LENGTH = struct.Struct(">I")


class ChildFailed(Exception):
    """The child did not check every file it was sent; the message says why."""


def _read_exactly(fd, count):
    chunks = []
    while count:
        chunk = os.read(fd, count)
        if not chunk:
            raise EOFError("stream ended early")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def frame(rel, text):
    """One file as a frame of the stream."""
    data = json.dumps([rel, text]).encode("utf-8")
    return _LENGTH.pack(len(data)) + data


def _child(make_check, read_fd, write_fd):
    """The child's whole life: check every file until the end frame, report, exit."""
    code = 0
    try:
        try:
            check = make_check()
            verdicts = {}                # rel -> error lines of the last text sent under it
            while True:
                size = _LENGTH.unpack(_read_exactly(read_fd, _LENGTH.size))[0]
                if not size:
                    break
                rel, text = json.loads(_read_exactly(read_fd, size).decode("utf-8"))
                verdicts[rel] = list(check(rel, text))
            report = {"errors": sorted([rel, lines] for rel, lines in verdicts.items() if lines)}
        except Exception as exc:  # pylint: disable=broad-except  # the parent refuses
            report = {"failed": "%s: %s" % (type(exc).__name__, exc)}
        _write_all(write_fd, json.dumps(report).encode("utf-8"))
    except BaseException:  # pylint: disable=broad-except  # cannot even report: exit 1
        code = 1
    finally:
        os._exit(code)  # pylint: disable=protected-access  # no cleanup in a fork


class CheckChild:
    """A forked child that runs ``make_check()`` once (in the child), then ``check(rel, text)
    -> [error line, ...]`` for every file sent to it. Create it before this process starts
    any thread."""

    def __init__(self, make_check):
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(from_parent)
            os.close(to_parent)
            _child(make_check, to_child, from_child)
        os.close(to_child)
        os.close(from_child)
        self._out = from_parent          # frames to the child
        self._in = to_parent             # the child's report
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._write_error = None
        self.sent = {}                   # rel -> the last text sent under it

    def _writer(self):
        try:
            while True:
                data = self._queue.get()
                if data is None:
                    break
                _write_all(self._out, data)
        except OSError as exc:           # the child is gone: finish() reports it
            self._write_error = exc
        finally:
            os.close(self._out)

    def send(self, rel, text):
        """Queue one file for the child (the first call starts the writer thread)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="kubeflat-check-feed",
                                            daemon=True)
            self._thread.start()
        self.sent[rel] = text
        self._queue.put(frame(rel, text))

    def _end_stream(self):
        self._queue.put(_LENGTH.pack(0))
        self._queue.put(None)
        if self._thread is None:
            self._writer()
        else:
            self._thread.join()

    def finish(self):
        """``{rel: [error line, ...]}`` for the files sent that the checker refused (the last
        text sent under each path); raises :class:`ChildFailed` when the child did not check
        them all."""
        self._end_stream()
        with os.fdopen(self._in, "rb") as handle:
            data = handle.read()         # to end of file: the child has reported and exits
        _unused, status = os.waitpid(self.pid, 0)
        self.pid = None
        try:
            report = json.loads(data.decode("utf-8"))
        except ValueError:
            report = None
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0) or \
                not isinstance(report, dict):
            raise ChildFailed("the check process did not finish (wait status %d)" % status)
        if "failed" in report:
            raise ChildFailed("the check process failed: %s" % report["failed"])
        by_rel = dict((rel, lines) for rel, lines in report.get("errors", []))
        if self._write_error is not None or not set(by_rel) <= set(self.sent):
            raise ChildFailed("the check process did not get every file (%s)"
                              % (self._write_error or "unexpected paths"))
        return by_rel

    def abandon(self):
        """Stop the child (after an error elsewhere); nothing it checked is used."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, 9)
        except OSError:
            pass
        try:
            self._end_stream()
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
            os.close(self._in)
        except OSError:
            pass
        self.pid = None


__all__ = ["CheckChild", "ChildFailed", "frame"]
