"""A real OCSF finding whose observables carry only their `type` caption, through the whole local pipeline
as a new user runs it (`vtriage run --json`): the failed-login source addresses it names are looked up in
VirusTotal, and the case says they were read by their caption. And a Detection Finding whose IOCs are only in
its evidence artifacts (`evidences[]`): each is looked up, naming the field it came from."""

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


# The Detection Finding of Elastic's Amazon Security Lake test data made New (tests/corpus/PROVENANCE.md): no
# observables; its IOCs only in evidences[0].
EVIDENCES = CORPUS / "synthetic-ocsf-detection-finding-evidences.json"
EVIDENCE_IOCS = {
    ("ip", "135.11.251.187"): "evidences[0].src_endpoint.ip",
    ("ip", "41.251.197.63"): "evidences[0].dst_endpoint.ip",
    ("domain", "brakes.travel"): "evidences[0].dst_endpoint.hostname",
    ("domain", "monroe.museum"): "evidences[0].query.hostname",
    (
        "file",
        "eb108a6bbdaf145d08d811956465ad4382629cf361e1f696e021be3abadb6d47",
    ): "evidences[0].file.hashes[1].value",
    ("file", "77f4de0c4db55dec736561ac64c7ea6b"): "evidences[0].process.parent_process.file.hashes[1].value",
}


def test_the_iocs_a_detection_finding_carries_only_in_its_evidences_are_looked_up() -> None:
    # Given a Detection Finding whose addresses, host names and hashes are only in its evidence artifacts
    # When a user runs it through the local pipeline
    status, document = run_json(EVIDENCES)

    # Then it is one case, and its destination and source, the host name and DNS query, the file's SHA-256
    # and the parent process's MD5 were each looked up in VirusTotal (a verdict's reasons and its page),
    # each naming the evidence field it came from
    assert status == 0
    assert (document["failures"], document["pending"], document["ignored"]) == ([], [], [])
    [case] = document["cases"]
    looked_up = {
        (ioc["type"], ioc["value"]): ioc
        for ioc in case["iocs"]
        if ioc["skipped_reason"] is None and (ioc["type"], ioc["value"]) in EVIDENCE_IOCS
    }
    assert set(looked_up) == set(EVIDENCE_IOCS)
    for key, ioc in looked_up.items():
        assert ioc["found_at"] == EVIDENCE_IOCS[key]
        assert ioc["link"].startswith("https://www.virustotal.com/gui/"), key
        assert ioc["reasons"], key
