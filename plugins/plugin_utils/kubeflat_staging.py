# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged writes of a render (:class:`Staging`): the files a render changes are written to a
hidden directory in the render dir while the checkers run, and renamed into place only once
they passed; a refusal removes that directory (nothing is written). Creating a file costs far
more than renaming one on the controller's disk, so the creations overlap the checks."""

from __future__ import absolute_import, division, print_function

import errno
import os
import shutil
import tempfile
import threading

__metaclass__ = type

STAGING_PREFIX = ".kubeflat-staging-"


def missing_dirs(path):
    """The directories of ``path`` (itself and its parents) that do not exist, outermost
    first."""
    missing = []
    head = os.path.abspath(path)
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    return missing[::-1]


def write_new(path, text):
    """Create ``path`` (it must not exist) with ``text`` (UTF-8), mode 0644 whatever the umask,
    as the action's writer leaves a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(fd, 0o644)
        handle.write(text)


class Staging:
    """Files written while the checkers run, and renamed into place only once they passed.

    ``items`` is ``[(path, text)]`` (paths under ``dest``). :meth:`start` makes a hidden
    directory in ``dest`` (same filesystem: a rename moves a file; ``dest`` and its missing
    parents are created for it) and writes the texts there from a thread (start it after any
    ``os.fork``). :meth:`commit` renames each staged file to its path, in order (an atomic
    replace per file, as a write to a temporary file and a rename); what is not staged is
    written by the given writer, as without staging. :meth:`discard` stops the thread and
    removes the directory, and the directories created for it: nothing of the files stays.
    """

    def __init__(self, dest, items):
        self.dest = dest
        self.items = list(items)
        self.directory = None
        self.created = []        # directories made for the staging directory (dest, parents)
        self.staged = 0          # items[:staged] are written in directory
        self.error = None        # what stopped the thread (the rest is written by commit)
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Make the staging directory and start writing the files into it in a thread. When
        the directory cannot be made, nothing is staged (:meth:`commit` writes every file, and
        meets the same error where writing without staging would)."""
        try:
            for directory in missing_dirs(self.dest):
                os.mkdir(directory)  # the default mode: as os.makedirs creates parents
                self.created.append(directory)
            self.directory = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.dest)
        except OSError as exc:
            self.error = exc
            self.discard()
            return
        self._thread = threading.Thread(target=self._write_all, name="kubeflat-staging",
                                        daemon=True)
        self._thread.start()

    def _write_all(self):
        try:
            for index, (unused_path, text) in enumerate(self.items):
                if self._stop.is_set():
                    return
                write_new(os.path.join(self.directory, str(index)), text)
                self.staged = index + 1
        except Exception as exc:  # pylint: disable=broad-except  # commit writes the rest
            self.error = exc

    def _join(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def commit(self, write):
        """Move every file into place, in order: the staged ones by a rename, the others (not
        staged, or on another filesystem) by ``write(path, text)``; then remove the staging
        directory."""
        self._join()
        self.created = []        # they hold the files now
        for index, (path, text) in enumerate(self.items):
            if index < self.staged:
                directory = os.path.dirname(path)
                if not os.path.isdir(directory):
                    os.makedirs(directory, 0o755)
                try:
                    os.rename(os.path.join(self.directory, str(index)), path)
                    continue
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
            write(path, text)
        self.discard()

    def discard(self):
        """Stop writing, remove the staging directory and the directories made for it."""
        self._stop.set()
        self._join()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        for directory in reversed(self.created):
            try:
                os.rmdir(directory)
            except OSError:
                break
        self.created = []


__all__ = ["STAGING_PREFIX", "Staging", "missing_dirs", "write_new"]
