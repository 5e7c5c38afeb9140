"""What a person reads in a terminal, shared by `vtriage run` (its report) and `vtriage cases` (the
operator command, which may import this module and `alert_files` only): the console, a value a sender
controls as literal text, verdicts and statuses in colour, the one-row-per-case table and the counts.

A finding's title, ids and S3 keys are the sender's: each is escaped by `vtriage.display.one_line`
(control characters visible, URL schemes defanged) and handed to rich as a `Text`, which rich never reads
as markup, so a title holding `[bold]` or `[link=...]` is shown as written.

Printed anywhere but a terminal (a file, a pipe, a CI log), the text is ASCII, so that its bytes are its
characters: a tool counting either (mawk counts bytes) finds the same widths. vtriage draws it in ASCII
(the table's rule in `-`, a cut in `...`) and `plain_text` escapes any other character as `\\u2026`.
Lines are broken at spaces only: a word longer than its line (a link, an ARN, a path) stays whole on a
line of its own, so that it can be copied (`lines`).
"""

from __future__ import annotations

import io
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

from rich.box import Box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from vtriage.display import one_line
from vtriage.models import Subject

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
# rich's SIMPLE_HEAD (a rule under the header, nothing else) drawn in ASCII: its `─` is three bytes.
_ASCII_HEAD = Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)
# What stands for the part of a table cell cut off (rich's own is the one-character `…`).
CUT_MARK = "..."
_WORD = re.compile(r"\S+")


def plain_text(renderables: Iterable[RenderableType], width: int = REPORT_WIDTH) -> str:
    """What the renderables print, `width` columns wide, without colour or terminal codes, without the
    blanks rich pads a table's cells with, and in ASCII (`ascii_text`)."""
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
    return "\n".join(ascii_text(line.rstrip()) for line in text.getvalue().splitlines())


def ascii_text(text: str) -> str:
    """The text with every character outside ASCII escaped as Python writes it (`\\xe9`, `\\u2026`,
    `\\U0001f600`), as `one_line` writes a control character: the text's bytes are then its characters."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def on_terminal(file: IO[str] | None = None) -> bool:
    """Whether `emit` prints on a terminal (`file`, stdout when None): in colour, as wide as it is."""
    return Console(file=file).is_terminal


def terminal_width(file: IO[str] | None = None) -> int:
    """The width `emit` prints at on `file` (stdout when None): the terminal's, else REPORT_WIDTH."""
    shown_on = Console(file=file)
    return shown_on.width if shown_on.is_terminal else REPORT_WIDTH


def emit(renderables: Iterable[RenderableType], file: IO[str] | None = None) -> None:
    """Print the renderables on `file` (stdout when None): on a terminal, as wide as it is and in colour
    (rich honours NO_COLOR and FORCE_COLOR); otherwise (a file, a pipe, a CI log) as `plain_text`,
    REPORT_WIDTH columns wide, in ASCII."""
    shown_on = Console(file=file, markup=False, emoji=False, highlight=False)
    if not shown_on.is_terminal:
        print(plain_text(renderables), file=file or sys.stdout)
        return
    for renderable in renderables:
        shown_on.print(renderable, crop=False)


def shown(value: object, limit: int = 300, style: str = "", *, keep_end: bool = False) -> Text:
    """A value a sender controls as literal text: escaped on one line, never read as markup, and cut
    after `limit` characters (`one_line`), or with `keep_end` in the middle, so that the end of a reason
    (what a file held, where) stays; in a table's cell, long words fold at the line's end (`lines` keeps
    them whole)."""
    if not keep_end:
        return Text(one_line(value, limit), style=style, overflow="fold")
    whole = one_line(value, len(str(value)) * 10 + 1)  # escaped whole: an escape is 10 characters at most
    if len(whole) > limit:
        kept = max(limit // 2, 1)
        whole = f"{whole[:kept]} ... [{len(whole) - 2 * kept} characters left out] ... {whole[-kept:]}"
    return Text(whole, style=style, overflow="fold")


def lines(head: Text, values: Iterable[Text], width: int, indent: int) -> list[Text]:
    """`head` (a label, a case's number) then the values, each starting a line `indent` columns in,
    broken at spaces to fit `width`. A word too long for that (a link, an ARN, a file name) is never
    split: it goes on a line of its own, moved left as far as it must to fit `width`, to the line's start
    when it cannot (a broken link or id can be neither clicked nor copied); the head then stands on its
    own line above it. Each line is printed as it is, never wrapped again."""
    shown_lines: list[Text] = []
    pending_head: Text | None = head
    for value in values:
        for piece in _broken_at_spaces(value, max(width - indent, 1)):
            size = cell_len(piece.plain)
            if size <= width - indent:
                line = pending_head.copy() if pending_head is not None else Text()
                line.pad_right(indent - cell_len(line.plain))
            else:
                if pending_head is not None and pending_head.plain.strip():
                    shown_lines.append(_whole(pending_head))
                line = Text(" " * max(0, width - size))
            line.append_text(piece)
            shown_lines.append(_whole(line))
            pending_head = None
    if pending_head is not None and pending_head.plain.strip():
        shown_lines.append(_whole(pending_head))
    return shown_lines


def _whole(text: Text) -> Text:
    """A line as it is printed: without trailing blanks, never wrapped again."""
    line = text.copy()
    line.rstrip()
    line.no_wrap, line.overflow = True, "ignore"
    return line


def _broken_at_spaces(text: Text, width: int) -> list[Text]:
    """The text in lines of at most `width` cells, broken at spaces only: a word longer than that is a
    line of its own, whole."""
    spans: list[tuple[int, int]] = []
    for word in _WORD.finditer(text.plain):
        if spans and cell_len(text.plain[spans[-1][0] : word.end()]) <= width:
            spans[-1] = (spans[-1][0], word.end())
        else:
            spans.append((word.start(), word.end()))
    return [text[start:end] for start, end in spans]


def cut(text: str, width: int) -> str:
    """The text in at most `width` cells: whole when it fits, else its start and CUT_MARK."""
    if cell_len(text) <= width:
        return text
    kept = ""
    for character in text:
        if cell_len(kept + character) > width - len(CUT_MARK):
            break
        kept += character
    return kept + CUT_MARK


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


def main_resource(resources: Iterable[tuple[str, str]], subjects: Sequence[Subject] = ()) -> str:
    """The resource a row names among the finding's (type, id) pairs: the most specific, with how many
    others there are; without any, the first of what the finding is about that vtriage takes no action on
    (`Subject`: 'Lambda function image-resizer'); "-" when it names neither."""
    found = list(resources)
    if not found:
        if not subjects:
            return "-"
        return subjects[0].short + (f" +{len(subjects) - 1}" if len(subjects) > 1 else "")
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
    share what the other columns leave, each cut with CUT_MARK (the case's details say them whole). The
    table is drawn in ASCII."""
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
    table = Table(box=_ASCII_HEAD, pad_edge=False, show_edge=False, padding=0)
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
            Text(cut(title, title_width), no_wrap=True, overflow="ellipsis"),
            Text(cut(resource, resource_width), no_wrap=True, overflow="ellipsis"),
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
