"""While a job runs, what was loaded before it is frozen out of garbage collection, and only then."""

import gc
import threading

from invscale.scoring.heap import settled_heap


def test_the_heap_is_frozen_while_any_holder_runs_and_handed_back_after():
    assert gc.get_freeze_count() == 0
    loaded = [[n] for n in range(1000)]
    with settled_heap():
        frozen = gc.get_freeze_count()
        assert frozen >= len(loaded)
        created = [[n] for n in range(10)]  # new objects are collected as usual
        assert all(gc.is_tracked(c) for c in created)
        entered, leave = threading.Event(), threading.Event()

        def other_job():
            with settled_heap():
                entered.set()
                leave.wait(5)

        worker = threading.Thread(target=other_job)
        worker.start()
        entered.wait(5)
    assert gc.get_freeze_count() > 0  # the other job still holds it
    leave.set()
    worker.join()
    assert gc.get_freeze_count() == 0


def test_the_heap_is_handed_back_when_a_job_fails():
    try:
        with settled_heap():
            raise RuntimeError("planner broke")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0
