"""VT Augment: VirusTotal's widget, a report of one IOC that a page frames, for display only.

`GET /api/v3/widget/url?query=<observable>` (with the API key, and optionally up to four theme colours,
`THEME_COLOURS`) answers `{"data": {"url": "https://www.virustotal.com/ui/widget/html/<token>",
"detection_ratio": {"detections": 5, "total": 71}}}`: a URL valid for three days, to embed in an iframe,
and how many security vendors flag the observable. VirusTotal says the widget enriches alerts and must
never power detections: the ratio is shown beside the widget and read by nothing else. The endpoint
needs a key whose licence includes VT Augment (docs/virustotal.md, "VT Augment").

A page may frame exactly one origin, `WIDGET_ORIGIN`: `widget_of` accepts only a widget page of
VirusTotal's (its documentation's example names the bare `virustotal.com`, which is the same page on
`www.virustotal.com`), so that no answer, from VirusTotal or a gateway standing in for it, can put
another site in the frame.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from vtriage.virustotal.errors import VirusTotalError

WIDGET_ORIGIN = "https://www.virustotal.com"
"""The one origin a page frames: what its Content-Security-Policy's frame-src names."""

THEME_COLOURS = ("fg1", "bg1", "bg2", "bd1")
"""The widget's documented theme parameters: foreground, two backgrounds and the border."""

_WIDGET_PATH = re.compile(r"/ui/widget/html/[A-Za-z0-9_\-+/=.]+")
_WIDGET_HOSTS = frozenset({"www.virustotal.com", "virustotal.com"})
_COLOUR = re.compile(r"#?[0-9a-fA-F]{6}")


class Widget(BaseModel):
    """One minted widget: the URL to frame (valid three days) and VirusTotal's detection ratio."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    detections: int | None = None
    total: int | None = None

    @property
    def ratio(self) -> str | None:
        """`5/71` when VirusTotal gave the ratio, else None."""
        if self.detections is None or self.total is None:
            return None
        return f"{self.detections}/{self.total}"


def widget_of(data: Any) -> Widget:
    """The widget in the `data` object of VirusTotal's answer; `VirusTotalError` (InvalidResponseError)
    when it holds no URL, or one that is not a widget page of VirusTotal's."""
    url = data.get("url") if isinstance(data, dict) else None
    framed = framable(url) if isinstance(url, str) else None
    if framed is None:
        raise VirusTotalError(
            "the answer holds no widget URL of VirusTotal's (https://www.virustotal.com/ui/widget/html/...)",
            "InvalidResponseError",
            200,
        )
    ratio = data.get("detection_ratio")
    ratio = ratio if isinstance(ratio, dict) else {}
    return Widget(url=framed, detections=_count(ratio.get("detections")), total=_count(ratio.get("total")))


def framable(url: str) -> str | None:
    """The widget URL on `WIDGET_ORIGIN`, or None when it is not a widget page of VirusTotal's."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme != "https" or parts.port is not None or (parts.hostname or "") not in _WIDGET_HOSTS:
        return None
    if parts.username or parts.password or parts.query or parts.fragment:
        return None
    if not _WIDGET_PATH.fullmatch(parts.path):
        return None
    return WIDGET_ORIGIN + parts.path


def theme_parameters(theme: dict[str, str]) -> dict[str, str]:
    """The theme as the widget's query parameters (`#rrggbb`); ValueError naming an unknown parameter or
    a colour that is not six hexadecimal digits."""
    unknown = sorted(set(theme) - set(THEME_COLOURS))
    if unknown:
        raise ValueError(f"unknown widget colours {unknown}: use {', '.join(THEME_COLOURS)}")
    bad = sorted(name for name, colour in theme.items() if not _COLOUR.fullmatch(colour))
    if bad:
        raise ValueError(f"widget colours {bad} must be six hexadecimal digits, such as #1a2b3c")
    return {name: "#" + theme[name].removeprefix("#").lower() for name in THEME_COLOURS if name in theme}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
