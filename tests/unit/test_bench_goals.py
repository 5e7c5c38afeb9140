"""`make bench`'s table says of each goal whether the figure met it, by the same comparison that fills
`bench/results.json`'s `goals_met`."""

from __future__ import annotations

from typing import Any

from bench.goals import FIGURES, goal_lines, goals_met


def _results(**figures: float) -> dict[str, Any]:
    """Results shaped as bench/__main__.py writes them, each figure at its goal's bound unless given."""
    results: dict[str, Any] = {
        "throughput": {"speedup": 5.0},
        "requests_per_unique_ioc": {"ratio": 1.0},
        "cold_start_over_dependency_floor": 1.10,
        "peak_rss_mb": 127.9,
        "runner_over_sequential_lookups": 0.99,
        "runner_500_peak_rss_mb": 299.9,
    }
    for key, value in figures.items():
        results[key] = value
    return results


def test_each_goal_line_says_met_or_missed_as_the_figure_compares_with_its_bound() -> None:
    # Given figures on the right side of each bound (a goal of ">=" or "<=" met at the bound itself),
    # but the 500-alert run's peak RSS at 300 MB, which "< 300" does not meet
    results = _results(runner_500_peak_rss_mb=300.0)

    # When the table is printed
    lines = goal_lines(results)

    # Then each figure's line ends with its marker, and results.json's goals_met says the same
    assert lines[0].split() == ["figure", "measured", "goal", "met?"]
    markers = {figure.name: line.split()[-1] for figure, line in zip(FIGURES, lines[1:], strict=True)}
    assert markers == {
        "throughput speedup vs vt-py sequential": "met",
        "VirusTotal requests per unique IOC (2 passes)": "met",
        "cold start, handler / its runtime dependencies": "met",
        "peak RSS of the enrich process, 10 alerts (MB)": "met",
        "vtriage run, 100 alerts / vt-py loop of their lookups": "met",
        "peak RSS of vtriage run, 500 alerts (MB)": "MISSED",
    }
    assert goals_met(results) == {
        "throughput.speedup": True,
        "requests_per_unique_ioc.ratio": True,
        "cold_start_over_dependency_floor": True,
        "peak_rss_mb": True,
        "runner_over_sequential_lookups": True,
        "runner_500_peak_rss_mb": False,
    }


def test_a_figure_past_its_bound_is_missed_whichever_way_the_goal_points() -> None:
    # Given a speedup under 5x and a cold start above 1.10x
    results = _results(cold_start_over_dependency_floor=1.14)
    results["throughput"]["speedup"] = 4.99

    # Then both are MISSED, the measured value shown as results.json holds it
    lines = {line.split("  ")[0]: line for line in goal_lines(results)[1:]}
    assert lines["throughput speedup vs vt-py sequential"].split()[-4:] == ["4.99", ">=", "5.0x", "MISSED"]
    assert lines["cold start, handler / its runtime dependencies"].endswith("MISSED")
    assert " 1.14 " in lines["cold start, handler / its runtime dependencies"]
