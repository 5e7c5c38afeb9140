"""A container builds its composition once, even when several threads ask for it at the same moment."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from vtriage.composition import built_once


def test_threads_asking_at_once_share_one_build() -> None:
    # Given a composition whose build takes a while, as creating its clients does
    builds: list[str] = []

    @built_once
    def composition(name: str) -> object:
        builds.append(name)
        time.sleep(0.05)
        return object()

    # When ten threads ask for it at the same moment, as the local runner's executions do
    start = threading.Barrier(10)

    def ask() -> object:
        start.wait()
        return composition("remediate")

    with ThreadPoolExecutor(max_workers=10) as pool:
        built = list(pool.map(lambda _: ask(), range(10)))

    # Then it was built once, and every thread got that one
    assert builds == ["remediate"]
    assert len({id(each) for each in built}) == 1


def test_other_arguments_are_other_builds_and_clearing_forgets_them() -> None:
    # Given a composition built for two settings, one of them asked again with a keyword
    builds: list[tuple[str, int]] = []

    @built_once
    def composition(name: str, size: int = 1) -> tuple[str, int]:
        builds.append((name, size))
        return (name, size)

    composition("a")
    composition("b", size=2)
    composition("a")
    composition("b", size=2)

    # When the cache is cleared, as a test of the composition does between stacks
    composition.cache_clear()
    composition("a")

    # Then each distinct call was built once before the clearing, and again after it
    assert builds == [("a", 1), ("b", 2), ("a", 1)]
