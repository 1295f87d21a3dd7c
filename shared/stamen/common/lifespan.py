"""App lifespans: `@app.lifespan()` over a generator that sets up, yields once, tears down.

    @app.lifespan()
    def lifespan(context: Context):
        model = load()      # before the app handles anything
        yield
        model.close()       # after, even when the app raised

A ClientApp enters its lifespan around each message it handles, a ServerApp around its
run, as in Flower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeAlias

from .context import Context

__all__ = ["LifespanFn", "as_context_manager", "no_lifespan"]

LifespanFn: TypeAlias = Callable[[Context], Iterator[None]]


def no_lifespan(context: Context) -> AbstractContextManager[None]:
    return nullcontext()


def as_context_manager(fn: LifespanFn) -> Callable[[Context], AbstractContextManager[None]]:
    """`fn` as a context manager factory that insists it yields exactly once."""
    name = getattr(fn, "__name__", repr(fn))

    @contextmanager
    def lifespan(context: Context) -> Iterator[None]:
        steps = fn(context)
        if not isinstance(steps, Iterator):
            raise TypeError(f"lifespan function {name} must yield (once), it returned a value")
        try:
            next(steps)
        except StopIteration:
            raise RuntimeError(f"lifespan function {name} should yield once") from None
        try:
            yield
        finally:
            try:
                next(steps)
            except StopIteration:
                pass
            else:
                raise RuntimeError(f"lifespan function {name} should yield only once")

    return lifespan
