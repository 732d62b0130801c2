"""The reader's validation pool: answers in order, errors told, no deadlock, a dead worker noticed."""

from __future__ import annotations

import operator
import os
import signal
import time

import pytest

from pipeline.reading.blocks import WorkerError, WorkerPool


@pytest.fixture
def pool():
    pool = WorkerPool(2)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def test_answers_in_order_and_errors_raised(pool):
    answers = [pool.submit(operator.add, i, 1) for i in range(20)]
    failed = pool.submit(operator.truediv, 1, 0)
    after = pool.submit(operator.mul, 6, 7)
    assert [a.result() for a in answers] == list(range(1, 21))
    with pytest.raises(ZeroDivisionError):
        failed.result()
    assert after.result() == 42


def test_answers_asked_out_of_order(pool):
    answers = [pool.submit(operator.add, i, 0) for i in range(9)]
    assert [answers[i].result() for i in (8, 0, 5, 1, 2, 3, 4, 6, 7)] == [8, 0, 5, 1, 2, 3, 4, 6, 7]


def test_big_tasks_and_big_answers_do_not_deadlock(pool):
    """A .gz block goes whole through the pipe, and a block of rejects comes back long: the
    reader sends the next tasks before reading the first answers."""
    block = b"x" * (4 << 20)
    answers = [pool.submit(bytes.upper, block) for _ in range(8)]
    assert all(a.result() == b"X" * (4 << 20) for a in answers)


def test_small_tasks_with_big_answers_do_not_deadlock(pool):
    """Blocks full of rejects: long answers to tasks of a few numbers."""
    answers = [pool.submit(bytes, 4 << 20) for _ in range(8)]
    assert all(len(a.result()) == 4 << 20 for a in answers)


def test_a_dead_worker_is_an_error(pool):
    pids = {pool.submit(os.getpid).result() for _ in range(2)}
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(WorkerError):
        pool.submit(operator.add, 1, 1).result()


def test_workers_ignore_sigint(pool):
    for pid in {pool.submit(os.getpid).result() for _ in range(2)}:
        os.kill(pid, signal.SIGINT)
    time.sleep(0.1)
    assert [pool.submit(operator.add, i, 1).result() for i in range(4)] == [1, 2, 3, 4]


def test_shutdown_ends_the_workers():
    pool = WorkerPool(2)
    pids = [pool.submit(os.getpid).result() for _ in range(2)]
    pending = pool.submit(time.sleep, 30)
    started = time.monotonic()
    pool.shutdown(wait=False, cancel_futures=True)
    assert time.monotonic() - started < 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    del pending


class _Child:
    """The process side of a fake worker: the test decides when its imports are done."""

    def poll(self):
        return None

    def wait(self, timeout=None):
        return 0

    def kill(self):
        pass


def _wait_until(condition, bound_s: float = 10.0) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.01)


@pytest.fixture
def fake_worker(monkeypatch):
    """``start_worker`` returns the parent's end of a socket pair; the child's end is the test's."""
    from multiprocessing.connection import Connection
    from socket import socketpair

    from pipeline.reading import worker_process

    ends = []

    def start_worker():
        ours, theirs = socketpair()
        ends.append(Connection(theirs.detach()))
        return Connection(ours.detach()), _Child()

    monkeypatch.setattr(worker_process, "start_worker", start_worker)
    return ends


def test_the_pool_is_ready_only_once_its_worker_finished_its_imports(fake_worker):
    """Until a worker says READY, the reader checks blocks itself (``ready`` is False): a block sent
    to a worker still importing would wait for its imports (0.5 s before the first batch)."""
    from pipeline.reading.worker_process import READY

    pool = WorkerPool(1)
    _wait_until(lambda: len(fake_worker) == 1)
    assert not pool.ready
    fake_worker[0].send(READY)
    _wait_until(lambda: pool.ready)
    pool.shutdown(wait=False)


def test_a_worker_that_ends_before_it_is_ready_fails_the_pool(fake_worker):
    pool = WorkerPool(1)
    _wait_until(lambda: len(fake_worker) == 1)
    fake_worker[0].close()
    _wait_until(lambda: pool.ready)
    with pytest.raises(WorkerError, match="did not start"):
        pool.submit(operator.add, 1, 1)
    pool.shutdown(wait=False)


def test_the_workers_start_side_by_side(fake_worker):
    """Every worker process is started before any is waited for: their imports overlap (one after
    the other, the first idled for as long as the second took to start)."""
    from pipeline.reading.worker_process import READY

    pool = WorkerPool(2)
    _wait_until(lambda: len(fake_worker) == 2)  # the second started while the first is still importing
    assert not pool.ready
    fake_worker[1].send(READY)
    fake_worker[0].send(READY)
    _wait_until(lambda: pool.ready)
    pool.shutdown(wait=False)


def test_a_worker_that_fails_to_start_fails_the_pool_and_closes_the_others(fake_worker):
    from pipeline.reading.worker_process import READY

    pool = WorkerPool(2)
    _wait_until(lambda: len(fake_worker) == 2)
    fake_worker[0].send(READY)
    fake_worker[1].close()
    _wait_until(lambda: pool.ready)
    with pytest.raises(WorkerError, match="did not start"):
        pool.submit(operator.add, 1, 1)
    assert fake_worker[0].poll(5)  # the started one is closed too: its end sees the end of the pipe
    with pytest.raises(EOFError):
        fake_worker[0].recv()
    pool.shutdown(wait=False)


def test_a_task_goes_to_the_worker_with_the_fewest_unanswered(fake_worker):
    """A worker slowed down must not hold the others back: the next task goes to one that has
    answered (in turn, the slow one got every other task and the fast one idled)."""
    from pipeline.reading.worker_process import READY

    pool = WorkerPool(2)
    _wait_until(lambda: len(fake_worker) == 2)
    fast, slow = fake_worker
    fast.send(READY)
    slow.send(READY)
    _wait_until(lambda: pool.ready)
    answers = [pool.submit(operator.add, 1, 1), pool.submit(operator.add, 2, 2)]  # one each, in turn
    assert fast.recv() == (operator.add, (1, 1))
    assert slow.recv() == (operator.add, (2, 2))
    done = 2  # the fast one's answer to its oldest task
    for n in (3, 4, 5):  # the slow one has not answered: the fast one gets them all
        fast.send((True, done))
        answers.append(pool.submit(operator.add, n, n))
        assert fast.poll(5) and fast.recv() == (operator.add, (n, n))
        assert not slow.poll(0)
        done = 2 * n
    fast.send((True, done))
    slow.send((True, 4))
    assert [a.result() for a in answers] == [2, 4, 6, 8, 10]
    pool.shutdown(wait=False)
