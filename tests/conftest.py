"""Fixtures every suite shares."""

from tests.coverage_threads import moto_threads_untraced

__all__ = ["moto_threads_untraced"]
