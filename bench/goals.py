"""The figures `make bench` holds to a goal, each goal's comparison, and the table that prints them with
whether each was met: one place for the comparison, so that the table and `bench/results.json`'s
`goals_met` never disagree."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Goal:
    """A figure's goal: met when the measured value compares with `bound` as `comparison` says
    (`>=`, `<=`, `<`); `shown` is how the table writes it."""

    comparison: str
    bound: float
    shown: str

    def met(self, value: float) -> bool:
        """Whether the measured value meets the goal."""
        return _COMPARISONS[self.comparison](value, self.bound)


@dataclass(frozen=True)
class Figure:
    """A measured figure with a goal: its line in the table, where it sits in the results, its goal."""

    name: str
    path: tuple[str, ...]
    goal: Goal

    def measured(self, results: Mapping[str, Any]) -> Any:
        """The figure as the results hold it, at its path."""
        node: Any = results
        for key in self.path:
            node = node[key]
        return node

    def met(self, results: Mapping[str, Any]) -> bool:
        """Whether the figure the results hold meets its goal."""
        return self.goal.met(float(self.measured(results)))


FIGURES = (
    Figure("throughput speedup vs vt-py sequential", ("throughput", "speedup"), Goal(">=", 5.0, ">= 5.0x")),
    Figure(
        "VirusTotal requests per unique IOC (2 passes)",
        ("requests_per_unique_ioc", "ratio"),
        Goal("<=", 1.0, "<= 1.00"),
    ),
    Figure(
        "cold start, handler / its runtime dependencies",
        ("cold_start_over_dependency_floor",),
        Goal("<=", 1.10, "<= 1.10x"),
    ),
    Figure("peak RSS of the enrich process, 10 alerts (MB)", ("peak_rss_mb",), Goal("<", 128, "< 128")),
    Figure(
        "vtriage run, 100 alerts / vt-py loop of their lookups",
        ("runner_over_sequential_lookups",),
        Goal("<", 1.0, "< 1.0"),
    ),
    Figure("peak RSS of vtriage run, 500 alerts (MB)", ("runner_500_peak_rss_mb",), Goal("<", 300, "< 300")),
)


def goals_met(results: Mapping[str, Any]) -> dict[str, bool]:
    """Whether each figure met its goal, by its path in the results (`throughput.speedup`)."""
    return {".".join(figure.path): figure.met(results) for figure in FIGURES}


def goal_lines(results: Mapping[str, Any]) -> list[str]:
    """The table's head and one line a figure: its name, the measured value, the goal, met or MISSED."""
    lines = [f"{'figure':<50} {'measured':>10}   {'goal':<9} met?"]
    for figure in FIGURES:
        marker = "met" if figure.met(results) else "MISSED"
        measured = str(figure.measured(results))
        lines.append(f"{figure.name:<50} {measured:>10}   {figure.goal.shown:<9} {marker}")
    return lines
