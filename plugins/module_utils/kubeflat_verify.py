# -*- coding: utf-8 -*-
# Copyright: kubeflat contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reachability matrix of playbooks/verify.yml: probe results in, cells and a table out.

A probe is one TCP connection from a source (a test pod, or an outside host) to a peer server
(in a test pod, or on an outside host) that answers with the source address it saw. A cell is
``ok`` only when the connection worked *and* the server saw the source's own address: a
reachable peer behind NAT is a failed cell, not a pass.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def probe_cells(results, source, expected_source):
    """Cells from the registered results of one source's probe loop.

    ``results`` are Ansible loop results with ``item`` = ``{"label", "address"}`` (the
    destination) and the probe's ``rc``/``stdout``/``stderr``; the probe prints
    ``<address the server saw> <local address>``.
    """
    cells = []
    for res in results or []:
        item = res.get("item") or {}
        cell = {"src": source, "dst": item.get("label"), "dst_address": item.get("address"),
                "expected": expected_source, "seen": None, "ok": False}
        words = (res.get("stdout") or "").split()
        if res.get("rc") == 0 and words:
            cell["seen"] = words[0]
            cell["ok"] = words[0] == expected_source
            cell["detail"] = "ok" if cell["ok"] else "NAT: peer saw %s" % words[0]
        else:
            err = (res.get("stderr") or res.get("msg") or "no answer").strip().splitlines()
            cell["detail"] = "unreachable: %s" % (err[-1] if err else "no answer")
        cells.append(cell)
    return cells


def failed_cells(cells):
    """The cells that failed."""
    return [c for c in cells if not c["ok"]]


def matrix_table(cells):
    """A table a person can read: one row per source, one column per destination.

    ``ok`` = reached, source address preserved; ``NAT`` = reached but the peer saw another
    address; ``FAIL`` = unreachable; ``.`` = not probed (same node, or host to host).
    """
    sources = sorted({c["src"] for c in cells})
    dests = sorted({c["dst"] for c in cells})
    grid = {(c["src"], c["dst"]): c for c in cells}

    def mark(cell):
        if cell is None:
            return "."
        if cell["ok"]:
            return "ok"
        return "NAT" if cell["seen"] else "FAIL"

    width = max([len("from \\ to")] + [len(s) for s in sources])
    cols = [max(len(d), 4) for d in dests]
    lines = ["%-*s | %s" % (width, "from \\ to", " | ".join(
        "%-*s" % (w, d) for w, d in zip(cols, dests)))]
    lines.append("-" * len(lines[0]))
    for src in sources:
        lines.append("%-*s | %s" % (width, src, " | ".join(
            "%-*s" % (w, mark(grid.get((src, d)))) for w, d in zip(cols, dests))))
    bad = failed_cells(cells)
    lines.append("%d of %d cells ok%s" % (len(cells) - len(bad), len(cells),
                                          "" if bad else " (no NAT, every source address seen "
                                          "as itself)"))
    for cell in bad:
        lines.append("FAILED %s -> %s (%s): %s"
                     % (cell["src"], cell["dst"], cell["dst_address"], cell["detail"]))
    return lines
