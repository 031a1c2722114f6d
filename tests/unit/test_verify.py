"""Unit tests for plugins/module_utils/kubeflat_verify.py (the verify reachability matrix)."""
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_verify import (
    failed_cells, matrix_table, probe_cells)


def probe(label, address, rc=0, stdout="", stderr=""):
    return {"item": {"label": label, "address": address}, "rc": rc, "stdout": stdout,
            "stderr": stderr}


def test_cells_pass_only_when_the_peer_saw_the_source_address():
    cells = probe_cells([
        probe("pod@w1", "10.244.1.2", stdout="10.77.0.31 10.77.0.31"),
        probe("pod@w2", "10.244.2.2", stdout="10.77.0.1 10.77.0.31"),
        probe("pod@cp1", "10.244.0.2", rc=1, stderr="Traceback...\nTimeoutError: timed out"),
    ], "db1", "10.77.0.31")
    assert [(c["dst"], c["ok"]) for c in cells] == [("pod@w1", True), ("pod@w2", False),
                                                    ("pod@cp1", False)]
    assert cells[1]["detail"] == "NAT: peer saw 10.77.0.1"
    assert cells[2]["detail"] == "unreachable: TimeoutError: timed out"
    assert [c["dst"] for c in failed_cells(cells)] == ["pod@w2", "pod@cp1"]


def test_skipped_or_empty_probe_is_a_failure_not_a_pass():
    cells = probe_cells([{"item": {"label": "x", "address": "1.2.3.4"}, "skipped": True}],
                        "pod@w1", "10.244.1.2")
    assert cells[0]["ok"] is False
    assert probe_cells(None, "a", "b") == []


def test_table_is_readable_and_marks_every_cell():
    cells = probe_cells([probe("pod@w1", "10.244.1.2", stdout="10.77.0.31 x")],
                        "db1", "10.77.0.31")
    cells += probe_cells([probe("db1", "10.77.0.31", stdout="10.244.1.2 x"),
                          probe("pod@w2", "10.244.2.2", rc=1)], "pod@w1", "10.244.1.2")
    lines = matrix_table(cells)
    assert lines[0].split("|")[0].strip() == "from \\ to"
    assert [c.strip() for c in lines[0].split("|")[1:]] == ["db1", "pod@w1", "pod@w2"]
    assert [c.strip() for c in lines[2].split("|")] == ["db1", ".", "ok", "."]
    assert [c.strip() for c in lines[3].split("|")] == ["pod@w1", "ok", ".", "FAIL"]
    assert lines[4] == "2 of 3 cells ok"
    assert lines[5].startswith("FAILED pod@w1 -> pod@w2 (10.244.2.2): unreachable")
    assert matrix_table(cells[:2])[-1].startswith("2 of 2 cells ok (no NAT")
