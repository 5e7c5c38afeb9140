"""What a person reads in a terminal, shared by `vtriage run` (its report) and `vtriage cases` (the
operator command, which may import this module and `alert_files` only): the console, a value a sender
controls as literal text, verdicts and statuses in colour, the one-row-per-case table and the counts.

A finding's title, ids and S3 keys are the sender's: each is escaped by `vtriage.display.one_line`
(control characters visible, URL schemes defanged) and handed to rich as a `Text`, which rich never reads
as markup, so a title holding `[bold]` or `[link=...]` is shown as written.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from vtriage.display import one_line

# The width of the report when it is not written to a terminal (a file, a pipe, a CI log): what fits an
# 80-column terminal and a review tool's diff alike. On a terminal, rich follows the terminal's width.
REPORT_WIDTH = 80

VERDICT_STYLES = {"malicious": "bold red", "suspicious": "yellow", "harmless": "green", "unknown": "dim"}
STATUS_STYLES = {
    "FAILED": "bold red",
    "PENDING_ENRICHMENT": "yellow",
    "NEW": "yellow",
    "ENRICHED": "yellow",
    "REMEDIATED": "green",
    "TICKETED": "cyan",
    "CLOSED": "dim",
}
# The order counts are listed in: the heaviest verdict first, a case's life in order.
VERDICTS = ("malicious", "suspicious", "harmless", "unknown")
BRANCHES = ("remediate", "ticket", "close")
STATUSES = ("NEW", "PENDING_ENRICHMENT", "ENRICHED", "REMEDIATED", "TICKETED", "CLOSED", "FAILED")
# The resource a table row names when the finding names several: the most specific first.
_RESOURCE_ORDER = ("s3_object", "instance", "access_key", "s3_bucket")


def plain_text(renderables: Iterable[RenderableType], width: int = REPORT_WIDTH) -> str:
    """What the renderables print, `width` columns wide, without colour or terminal codes, and without
    the blanks rich pads a table's cells with."""
    text = io.StringIO()
    plain = Console(
        file=text,
        width=width,
        color_system=None,
        force_terminal=False,
        markup=False,
        emoji=False,
        highlight=False,
    )
    for renderable in renderables:
        # Not cropped: a link longer than the line stays whole.
        plain.print(renderable, crop=False)
    return "\n".join(line.rstrip() for line in text.getvalue().splitlines())


def terminal_width(file: IO[str] | None = None) -> int:
    """The width `emit` prints at on `file` (stdout when None): the terminal's, else REPORT_WIDTH."""
    shown_on = Console(file=file)
    return shown_on.width if shown_on.is_terminal else REPORT_WIDTH


def emit(renderables: Iterable[RenderableType], file: IO[str] | None = None) -> None:
    """Print the renderables on `file` (stdout when None): on a terminal, as wide as it is and in colour
    (rich honours NO_COLOR and FORCE_COLOR); otherwise (a file, a pipe, a CI log) as `plain_text`,
    REPORT_WIDTH columns wide."""
    shown_on = Console(file=file, markup=False, emoji=False, highlight=False)
    if not shown_on.is_terminal:
        print(plain_text(renderables), file=file or sys.stdout)
        return
    for renderable in renderables:
        shown_on.print(renderable, crop=False)


def shown(value: object, limit: int = 300, style: str = "") -> Text:
    """A value a sender controls as literal text: escaped on one line and cut (`one_line`), never read as
    markup; long words fold at the line's end rather than overflow it."""
    return Text(one_line(value, limit), style=style, overflow="fold")


def verdict_text(verdict: str | None) -> Text:
    """A verdict in its colour."""
    text = verdict or "-"
    return Text(text, style=VERDICT_STYLES.get(text, ""))


def status_text(status: str | None) -> Text:
    """A case's status in its colour."""
    text = status or "-"
    return Text(text, style=STATUS_STYLES.get(text, ""))


@dataclass(frozen=True)
class CaseRow:
    """One case as the table shows it; `title` and `resource` are the sender's (escaped when shown)."""

    verdict: str | None
    branch: str | None
    status: str | None
    title: str
    resource: str
    iocs: int
    number: int | None = None


def main_resource(resources: Iterable[tuple[str, str]]) -> str:
    """The resource a row names among the finding's (type, id) pairs: the most specific, with how many
    others there are; "-" when it names none."""
    found = list(resources)
    if not found:
        return "-"
    ranked = sorted(
        found,
        key=lambda item: (
            _RESOURCE_ORDER.index(item[0]) if item[0] in _RESOURCE_ORDER else len(_RESOURCE_ORDER)
        ),
    )
    others = f" +{len(found) - 1}" if len(found) > 1 else ""
    return ranked[0][1] + others


def case_table(rows: Sequence[CaseRow], width: int = REPORT_WIDTH) -> Table:
    """One line per case, `width` columns wide: its number (when the rows have one), verdict in colour,
    branch, status, title, the resource it names and how many IOCs it holds. The title and the resource
    share what the other columns leave, each cut with an ellipsis (the case's details say them whole)."""
    numbered = any(row.number is not None for row in rows)
    titles = [one_line(row.title, 200) for row in rows]
    resources = [one_line(row.resource, 200) for row in rows]
    fixed = {
        "#": [str(row.number) for row in rows] if numbered else None,
        "verdict": [row.verdict or "-" for row in rows],
        "branch": [row.branch or "-" for row in rows],
        "status": [row.status or "-" for row in rows],
        "IOCs": [str(row.iocs) for row in rows],
    }
    widths = {name: max(len(name), *map(len, values)) for name, values in fixed.items() if values is not None}
    # Columns are one space apart.
    left = width - sum(widths.values()) - (len(widths) + 1)
    resource_width = max(8, min(max(map(len, resources), default=8), left // 2))
    title_width = max(10, left - resource_width)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=0)
    for name in ("#", "verdict", "branch", "status"):
        if name in widths:
            table.add_column(
                name, justify="right" if name == "#" else "left", width=widths[name], no_wrap=True
            )
    table.add_column("title", width=title_width, no_wrap=True, overflow="ellipsis")
    table.add_column("resource", width=resource_width, no_wrap=True, overflow="ellipsis")
    table.add_column("IOCs", justify="right", width=widths["IOCs"], no_wrap=True)
    for row, title, resource in zip(rows, titles, resources, strict=True):
        cells = [
            verdict_text(row.verdict),
            Text(row.branch or "-"),
            status_text(row.status),
            Text(title, no_wrap=True, overflow="ellipsis"),
            Text(resource, no_wrap=True, overflow="ellipsis"),
            Text(str(row.iocs)),
        ]
        table.add_row(*([Text(str(row.number))] if numbered else []), *cells)
    return table


def counts(label: str, values: Iterable[str | None], order: Sequence[str] = ()) -> Text:
    """`label: 3 malicious, 1 unknown`: how many of each value, in `order` first, then the others; each
    value in its colour."""
    counted = Counter(value or "-" for value in values)
    line = Text(f"{label}: ")
    ordered = [value for value in order if value in counted] + sorted(set(counted) - set(order))
    for position, value in enumerate(ordered):
        if position:
            line.append(", ")
        style = VERDICT_STYLES.get(value) or STATUS_STYLES.get(value, "")
        line.append(f"{counted[value]} ")
        line.append(one_line(value, 60), style=style)
    if not ordered:
        line.append("none")
    return line
