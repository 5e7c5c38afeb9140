"""A real OCSF finding whose observables carry only their `type` caption, through the whole local pipeline
as a new user runs it (`vtriage run --json`): the failed-login source addresses it names are looked up in
VirusTotal, and the case says they were read by their caption."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from vtriage_cli.main import main as vtriage

pytestmark = pytest.mark.functional

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
# The Okta credential-stuffing finding of msaad00/cloud-ai-security-skills, its five failed-login source
# addresses made public (tests/corpus/PROVENANCE.md): observables {"type": "IP Address", "value": ...}, no
# type_id.
OKTA_PUBLIC = CORPUS / "synthetic-ocsf-okta-stuffing-public-addresses.json"
FAILED_LOGIN_SOURCES = {"185.220.101.34", "45.137.21.9", "185.220.101.35", "45.137.21.10", "185.220.101.36"}


def run_json(path: Path) -> tuple[int, dict[str, Any]]:
    """`vtriage run --json FILE`, as a user types it: its exit status and its JSON document."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        status = vtriage(["run", "--json", str(path)])
    return status, json.loads(stdout.getvalue())


def test_the_failed_login_sources_an_okta_finding_names_by_caption_are_looked_up() -> None:
    # Given the Okta credential-stuffing finding whose source addresses are typed by caption alone
    # When a user runs it through the local pipeline
    status, document = run_json(OKTA_PUBLIC)

    # Then it is one case, and each of the five addresses was looked up in VirusTotal (a verdict, its
    # reasons and its VirusTotal page), none skipped
    assert status == 0
    assert (document["failures"], document["pending"], document["ignored"]) == ([], [], [])
    [case] = document["cases"]
    looked_up = {
        ioc["value"]: ioc
        for ioc in case["iocs"]
        if ioc["type"] == "ip" and ioc["skipped_reason"] is None and ioc["value"] in FAILED_LOGIN_SOURCES
    }
    assert set(looked_up) == FAILED_LOGIN_SOURCES
    for address, ioc in looked_up.items():
        assert ioc["link"] == f"https://www.virustotal.com/gui/ip-address/{address}"
        assert ioc["reasons"], address
    # And the case says they were read by their caption, the type_id OCSF requires being missing
    assert (
        "observables[4, 5, 6, 7, 8, 9].type_id: missing (OCSF requires it); the type caption 'IP Address'"
        " stands in"
    ) in case["notes"]
