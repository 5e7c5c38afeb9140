"""Where VirusTotal keeps an object: its collection and id in API v3, its web page, and the key under
which the client annotates an object it returns.

Both sides of the `ThreatIntel` port need these: the client (`vtriage.adapters.virustotal`) to build its
requests, the verdict to link an analyst to the object and read the client's notes.
"""

from __future__ import annotations

import base64
import urllib.parse

from vtriage.models import Ioc, IocType

GUI_BASE_URL = "https://www.virustotal.com/gui"

_COLLECTIONS = {
    IocType.FILE: "files",
    IocType.URL: "urls",
    IocType.DOMAIN: "domains",
    IocType.IP: "ip_addresses",
}
_GUI_KINDS = {
    IocType.FILE: "file",
    IocType.URL: "url",
    IocType.DOMAIN: "domain",
    IocType.IP: "ip-address",
}

NOTES_KEY = "vtriage"
"""Key the client adds to a returned object: `{"notes": [...], "deep_requests": n}` when deep context ran or
a secondary call failed. `vtriage.verdict.assess_ioc` turns the notes into `Enrichment.note`."""


def url_id(url: str) -> str:
    """The URL identifier VirusTotal accepts in `urls/{id}`: the URL in unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def object_ref(ioc: Ioc) -> tuple[str, str]:
    """The (collection, id) under which VirusTotal keeps the IOC: files|urls|domains|ip_addresses."""
    identifier = url_id(ioc.value) if ioc.type is IocType.URL else ioc.value
    return _COLLECTIONS[ioc.type], identifier


def gui_link(ioc: Ioc, vt_id: str | None = None) -> str:
    """The VirusTotal web page of the IOC, for an analyst to open.

    `vt_id` is the object's own id as VirusTotal returned it; for URLs that is the SHA-256 of the
    canonical URL, which the GUI documents for links, so it is preferred over the base64 form.
    """
    identifier = vt_id or object_ref(ioc)[1]
    return f"{GUI_BASE_URL}/{_GUI_KINDS[ioc.type]}/{urllib.parse.quote(identifier, safe='')}"
