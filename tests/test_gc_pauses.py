"""odar.gc_pauses: what start built is frozen out of the cycle collector while the daemon runs."""

from __future__ import annotations

import gc
import weakref

import pytest

from odar.gc_pauses import startup_objects_frozen


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


def cycle() -> weakref.ref[Node]:
    """Two objects that refer to each other and nothing else: only the collector frees them."""
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    return weakref.ref(first)


def test_objects_from_before_are_frozen_and_a_collection_no_longer_walks_them():
    kept = [Node() for _ in range(1000)]
    with startup_objects_frozen() as frozen:
        assert frozen >= len(kept) and gc.get_freeze_count() >= len(kept)
        assert not any(obj is kept[0] for obj in gc.get_objects())
    assert gc.get_freeze_count() == 0
    assert any(obj is kept[0] for obj in gc.get_objects())


def test_garbage_from_before_the_freeze_is_collected_first():
    before = cycle()
    with startup_objects_frozen():
        assert before() is None


def test_cycles_made_while_frozen_are_still_collected():
    with startup_objects_frozen():
        during = cycle()
        gc.collect()
        assert during() is None


def test_an_exception_inside_unfreezes():
    with pytest.raises(RuntimeError), startup_objects_frozen():
        raise RuntimeError("stop")
    assert gc.get_freeze_count() == 0
