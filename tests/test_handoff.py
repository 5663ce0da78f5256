"""The after-commit hand-off's ``settle``: a test (or an exiting process) can wait until
its apps' hand-offs have nothing in flight, and learns when they still have."""

from __future__ import annotations

import threading

from flask_mcsync import handoff


class _App:
    """Stands in for an app's state: the hand-off only keeps a weak reference to it."""


def test_settle_waits_for_the_delivery_in_flight() -> None:
    app = _App()
    delivered: list[list[int]] = []
    release = threading.Event()

    def deliver(_app: object, ids: list[int]) -> int:
        release.wait(10)
        delivered.append(ids)
        return len(ids)

    try:
        assert handoff.handoff_for(app, deliver).submit([3, 1])  # type: ignore[arg-type]
        # The delivery is held: settle says so instead of returning as if it were done.
        assert not handoff.settle(0.3, app)  # type: ignore[arg-type]
        assert delivered == []
    finally:
        release.set()
    assert handoff.settle(5.0, app)  # type: ignore[arg-type]
    assert delivered == [[1, 3]]


def test_settle_without_an_app_covers_every_app_of_the_process() -> None:
    first, second = _App(), _App()
    releases = {id(first): threading.Event(), id(second): threading.Event()}
    delivered: dict[int, list[int]] = {}

    def deliver(app: object, ids: list[int]) -> int:
        releases[id(app)].wait(10)
        delivered[id(app)] = ids
        return len(ids)

    try:
        assert handoff.handoff_for(first, deliver).submit([1])  # type: ignore[arg-type]
        assert handoff.handoff_for(second, deliver).submit([2])  # type: ignore[arg-type]
        releases[id(first)].set()
        assert handoff.settle(5.0, first)  # type: ignore[arg-type]
        # The second app's delivery is still held: settling the process is not done.
        assert not handoff.settle(0.3)
        assert delivered == {id(first): [1]}
    finally:
        for release in releases.values():
            release.set()
    assert handoff.settle(5.0)
    assert delivered == {id(first): [1], id(second): [2]}
