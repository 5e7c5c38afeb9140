"""Coverage without tracing moto's server: the local stack (vtriage_local.stack) runs moto in this process,
in threads of its own, and on Python 3.11 coverage's tracer (a trace function in every thread) doubled
the functional suites' time although moto is no part of what coverage measures. Under coverage, the
threads moto and its web server start run untraced, and what the local stack patches into moto (the
Lambda dispatcher that calls the handlers, the replacements of vtriage_local.moto_speedups) is traced again
when moto calls it from them: every line of vtriage that runs is still measured, wherever it runs (the
same lines as with every thread traced, checked on test_state_machine). A function of ours patched into
moto must be added to `moto_threads_untraced`. Moto used in-process through `mock_aws` runs in the
test's own thread and stays traced.

Nothing changes without coverage, nor when coverage does not trace threads through `threading.settrace`
(Python 3.12 and later, where it uses `sys.monitoring`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from vtriage_local import loopback, stack
from vtriage_local.moto_speedups import moto_speedups

# Threads whose work starts in these packages run only library code: moto's request threads (werkzeug's
# server), its server thread and the threads of its Step Functions engine.
_UNTRACED_PACKAGES = ("moto", "werkzeug")

TraceFunction = Callable[..., Any]


def _starts_in_library(thread: threading.Thread) -> bool:
    """Whether the thread's target is library code: a function of those packages, or a method of an
    object of theirs (a werkzeug server's request thread runs `socketserver`'s method on that server)."""
    target = getattr(thread, "_target", None)
    owner = getattr(target, "__self__", None)
    module = type(owner).__module__ if owner is not None else getattr(target, "__module__", None) or ""
    return module.split(".", 1)[0] in _UNTRACED_PACKAGES


def _untrace_library_threads(coverage_hook: TraceFunction) -> TraceFunction:
    """A `threading.settrace` hook: coverage's own hook for every thread but the library's."""

    def hook(frame: FrameType, event: str, arg: Any) -> Any:
        if _starts_in_library(threading.current_thread()):
            sys.settrace(None)
            return None
        return coverage_hook(frame, event, arg)

    return hook


def _traced(coverage_hook: TraceFunction, function: Any) -> Any:
    """The function, run under coverage's tracer when it is called from an untraced thread."""

    def traced(*args: Any, **kwargs: Any) -> Any:
        if sys.gettrace() is not None:
            return function(*args, **kwargs)
        sys.settrace(coverage_hook)  # coverage starts a tracer for this thread on the next call
        try:
            return function(*args, **kwargs)
        finally:
            sys.settrace(None)

    return traced


def _untraced(function: Any) -> Any:
    """The function, run without coverage's tracer in a traced thread: moto answering a request in the
    caller's thread (vtriage_local.loopback) is library code, as its server's threads are."""

    def untraced(*args: Any, **kwargs: Any) -> Any:
        hook = sys.gettrace()
        if hook is None:
            return function(*args, **kwargs)
        sys.settrace(None)
        try:
            return function(*args, **kwargs)
        finally:
            sys.settrace(hook)

    return untraced


def _traced_dispatcher(coverage_hook: TraceFunction, make_dispatcher: Any) -> Any:
    """`stack._make_dispatcher`, whose dispatcher (moto's Lambda backend calls it from a request
    thread) runs the handler under coverage's tracer."""

    def make(aws: stack.LocalAws) -> Any:
        return _traced(coverage_hook, make_dispatcher(aws))

    return make


def _traced_speedups(coverage_hook: TraceFunction, speedups: Any) -> Any:
    """`vtriage_local.moto_speedups` as the local stack starts it, whose replacements (moto calls them
    from its threads: its server's, its Step Functions engine's) run under coverage's tracer."""

    def make() -> list[Any]:
        patches: list[Any] = speedups()
        for patch in patches:
            patch.new = _traced(coverage_hook, patch.new)
        return patches

    return make


@pytest.fixture(scope="session", autouse=True)
def moto_threads_untraced() -> Iterator[None]:
    """Under coverage's tracer, moto's threads untraced and the handlers they call traced."""
    coverage_hook = threading.gettrace()
    if coverage_hook is None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        # Every function of ours the local stack patches into moto, which moto calls from its threads.
        patch.setattr(stack, "_make_dispatcher", _traced_dispatcher(coverage_hook, stack._make_dispatcher))
        patch.setattr(stack, "moto_speedups", _traced_speedups(coverage_hook, moto_speedups))
        # moto answering in the caller's thread runs untraced too, and what it calls of ours traced again.
        patch.setattr(loopback, "_answer", _untraced(loopback._answer))
        threading.settrace(_untrace_library_threads(coverage_hook))
        try:
            yield
        finally:
            threading.settrace(coverage_hook)
