"""plugin_utils/kubeflat_check_child.py: a checker in a forked child, fed files while the
parent goes on. The verdicts must be the checker's own (the real kubernetes-validate here),
of the last text sent under each path; a child that fails or dies must be a refusal; feeding
must not block the parent; abandoning must leave no process behind."""
import os
import signal
import time

import pytest

from ansible_collections.kubeflat.cluster.plugins.plugin_utils import kubeflat_checkers as checkers
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_check_child import (
    CheckChild, ChildFailed, frame)

GOOD = """---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 8080}]
"""
BAD = GOOD.replace("port: 8080,", "port: eighty,")   # a string where the schema wants an int


def kube_check():
    return checkers.KubeValidator("1.37.0", strict=True).check


@pytest.fixture
def deadline():
    """Fail instead of hanging if a pipe blocks."""
    def expired(*_args):
        raise TimeoutError("blocked")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_child_gives_the_real_checkers_verdict_for_each_file(deadline):
    in_process = kube_check()
    files = {"specs/a%02d.yaml" % i: (BAD if i in (3, 17) else GOOD) for i in range(30)}
    child = CheckChild(kube_check)
    for rel in sorted(files, reverse=True):
        child.send(rel, files[rel])
    verdicts = child.finish()
    assert sorted(verdicts) == ["specs/a03.yaml", "specs/a17.yaml"]
    for rel, lines in verdicts.items():
        assert lines == in_process(rel, files[rel]) and lines
    assert in_process("specs/a00.yaml", GOOD) == []


def test_the_last_text_sent_under_a_path_is_the_one_judged(deadline):
    child = CheckChild(kube_check)
    child.send("specs/x.yaml", BAD)
    child.send("specs/x.yaml", GOOD)
    child.send("specs/y.yaml", GOOD)
    child.send("specs/y.yaml", BAD)
    assert sorted(child.finish()) == ["specs/y.yaml"]
    assert child.sent == {"specs/x.yaml": GOOD, "specs/y.yaml": BAD}


def test_nothing_sent_is_nothing_refused(deadline):
    assert CheckChild(kube_check).finish() == {}


def test_a_checker_that_cannot_start_is_a_refusal_naming_why(deadline):
    def broken():
        raise checkers.CheckerError("kubernetes-validate does not support kubernetes 9.9")
    child = CheckChild(broken)
    child.send("specs/a.yaml", GOOD)
    with pytest.raises(ChildFailed, match="failed: CheckerError: kubernetes-validate does not"):
        child.finish()


def test_a_child_that_dies_is_a_refusal(deadline):
    def dying():
        def check(rel, text):
            os._exit(3)   # pylint: disable=protected-access
        return check
    child = CheckChild(dying)
    for i in range(200):            # more than a pipe holds: the writer meets a closed pipe
        child.send("specs/a%03d.yaml" % i, GOOD * 20)
    with pytest.raises(ChildFailed, match="did not finish"):
        child.finish()


def test_sending_does_not_wait_for_the_child(tmp_path, deadline):
    """The child does not read until a flag file exists, which this test makes only after
    sending ~4 MB (far more than a pipe buffer): send() must have returned by then."""
    flag = tmp_path / "go"

    def slow_start():
        while not flag.exists():
            time.sleep(0.01)
        return lambda rel, text: []
    child = CheckChild(slow_start)
    for i in range(400):
        child.send("specs/a%03d.yaml" % i, "x" * 10000)
    flag.write_text("go")
    assert child.finish() == {}


def test_abandon_leaves_no_process(deadline):
    def forever():
        while True:
            time.sleep(1)
    child = CheckChild(forever)
    pid = child.pid
    child.send("specs/a.yaml", GOOD)
    child.abandon()
    assert child.pid is None and gone(pid)
    child.abandon()                 # twice is harmless


def test_a_frame_is_a_length_and_json():
    data = frame("specs/a.yaml", "k: v\n")
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert data[4:] == b'["specs/a.yaml", "k: v\\n"]'
