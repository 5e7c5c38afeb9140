"""A local stack gives the process its environment back however stacks overlap: the variables it set go
back to what the newest stack still running set, or to what they were before any stack."""

from __future__ import annotations

import os

import pytest

from vtriage_local.stack import LocalAws

NAME = "AWS_ENDPOINT_URL"


def test_stacks_stopped_out_of_order_leave_no_stopped_stacks_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no endpoint, then a module's stack setting its own, then a package's stack setting another
    monkeypatch.delenv(NAME, raising=False)
    module_stack, package_stack = LocalAws(), LocalAws()
    module_stack._set_env({NAME: "http://127.0.0.1:1111"})
    package_stack._set_env({NAME: "http://127.0.0.1:2222"})

    # When the module's stack stops first, while the package's still runs
    module_stack.stop()

    # Then the endpoint is the running stack's
    assert os.environ[NAME] == "http://127.0.0.1:2222"

    # And when the package's stops too, there is no endpoint, as before either started
    package_stack.stop()
    assert NAME not in os.environ


def test_a_stack_started_inside_another_gives_the_outer_ones_environment_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a value before any stack, an outer stack and an inner one each setting it
    monkeypatch.setenv(NAME, "https://example.invalid")
    outer, inner = LocalAws(), LocalAws()
    outer._set_env({NAME: "http://127.0.0.1:1111"})
    inner._set_env({NAME: "http://127.0.0.1:2222"})

    # When the inner one stops, then the outer
    inner.stop()
    during = os.environ[NAME]
    outer.stop()

    # Then the outer's value came back, then the one before any stack
    assert during == "http://127.0.0.1:1111"
    assert os.environ[NAME] == "https://example.invalid"
