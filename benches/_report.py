"""Printing benchmark figures in one format."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def figure(name: str, value: float, unit: str) -> None:
    print(f"  {name:<58} {value:>12,.2f} {unit}")


def ratio(name: str, measured: float, baseline: float) -> None:
    """``measured / baseline`` (e.g. seconds through the flow / seconds raw)."""
    print(f"  {name:<58} {measured / baseline:>12,.2f} x")


def heading(title: str) -> None:
    print(f"\n== {title}")


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...; elapsed()`` gives seconds since entry."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())
