"""shared.heap: the collector's settings once start-up is over, and back."""

import gc

from shared import heap


def test_settle_freezes_the_start_up_heap_and_collects_the_young_less_often():
    before = gc.get_threshold()
    heap.settle()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *before[1:])
    finally:
        heap.release()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_release_without_settle_changes_nothing():
    before = gc.get_threshold()
    gc.set_threshold(1234, *before[1:])
    gc.freeze()
    try:
        heap.release()
        assert gc.get_threshold() == (1234, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
