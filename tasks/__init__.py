"""Prefect tasks of the flows: thin I/O and retry boundaries around crimeflow's library code.

Every task is declared with `step`, which states the project's one task policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

P = ParamSpec("P")
R = TypeVar("R")


@overload
def step(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def step(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def step(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """A Prefect task that never caches its results by input: `@step` or `@step(name=...)`.

    DataFrames pass between the tasks in memory, and Prefect's default cache policy would hash
    every input to look a result up: hashing a 200k-row frame costs more than the step itself,
    and a step re-run on the same inputs should do its I/O again anyway (the lake, the registry
    and the prediction log move between runs). `options` go to `prefect.task` unchanged (name,
    retries, ...); the name defaults to the function's, as with `@task`.
    """
    if fn is None:
        return task(cache_policy=NO_CACHE, **options)
    return task(fn, cache_policy=NO_CACHE, **options)
