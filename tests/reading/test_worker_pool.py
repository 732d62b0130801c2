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
