"""The case report every ticket provider and the approval request share: a headline of vtriage's words
only, the genuine links under a fixed header, then labelled lines whose values `vtriage.display.one_line`
escaped.

A `Report` keeps vtriage's own words apart from the sender's: the genuine links (approve, reject) come
first under a fixed header, and every later line is a label of vtriage's followed by escaped values, so
no sender text can start a line, let alone imitate the header or a link above it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

REPORT_HEADER = "vtriage case report"
LINKS_HEADER = "Links from vtriage (the only links in this message that act on anything):"
VALUES_NOTE = (
    "Below, values from the alert and from VirusTotal follow their label, escaped, on one line each."
)


class ReportLink(BaseModel):
    """A link vtriage made (an approve or reject link), with vtriage's own label."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    url: str


class ReportLine(BaseModel):
    """One line of a report: vtriage's label, then the values (already escaped by `one_line`), or a
    link vtriage made (a VirusTotal page). A line with neither is a heading; an empty label a blank."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = ""
    value: str = ""
    link: str | None = None
    indent: int = 0

    @property
    def text(self) -> str:
        """The line as plain text."""
        shown = self.link or self.value
        return " " * self.indent + (f"{self.label}: {shown}" if shown else self.label)


def link_lines(links: Sequence[ReportLink]) -> list[str]:
    """vtriage's links as plain-text lines, `Label: url`, the urls aligned."""
    if not links:
        return []
    width = max(len(link.label) for link in links) + 1
    return [f"{link.label + ':':<{width}} {link.url}" for link in links]


def comment_text(text: str, links: Sequence[ReportLink] = ()) -> str:
    """A ticket comment as plain text: vtriage's links first under the links header, as a report shows
    them (before any sender value), then the text."""
    if not links:
        return text
    return "\n".join([LINKS_HEADER, *link_lines(links), "", text])


class Report(BaseModel):
    """A report a person reads: a headline of vtriage's words only, the genuine links under a fixed
    header, then labelled lines. Each ticket provider renders it in its own markup."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    headline: str
    links: tuple[ReportLink, ...] = ()
    links_note: str = ""
    lines: tuple[ReportLine, ...] = ()

    def head_lines(self) -> list[str]:
        """The fixed header, the headline and the genuine links: what comes before any sender text."""
        head = [f"{REPORT_HEADER}: {self.headline}"]
        if self.links:
            head += ["", LINKS_HEADER]
            if self.links_note:
                head.append(self.links_note)
            head += link_lines(self.links)
        return [*head, "", VALUES_NOTE]

    def body(self) -> str:
        """The labelled lines as plain text."""
        return "\n".join(line.text for line in self.lines)

    def text(self) -> str:
        """The whole report as plain text (an e-mail, a ServiceNow description)."""
        return "\n".join([*self.head_lines(), "", self.body()]) + "\n"
