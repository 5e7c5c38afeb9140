"""What the enrich function's cold start loads of vtriage, and what reading its first record adds: each
detector's reader is imported with the first document of its shape, never at start-up, and no other
function's settings are. bench/cold_start.py measures what the rest costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
READERS = {
    "vtriage.intake.guardduty",
    "vtriage.intake.securityhub",
    "vtriage.intake.ocsf",
    "vtriage.intake.falcon",
    "vtriage.intake.workspace",
}
# What only the readers need: the field readers, the IOC rules under them, the vendors' shared assembly.
READER_HELPERS = {
    "vtriage.intake.fields",
    "vtriage.intake.canonical",
    "vtriage.intake.refang",
    "vtriage.intake.suffixes",
    "vtriage.intake.vendor",
}
# The ports only type the enrich steps' collaborators; VT Augment's widgets, the approval links and the
# case report are the approval and ticket functions'.
NOT_AT_START = {"vtriage.ports", "vtriage.virustotal.widget", "vtriage.approval_links", "vtriage.report"}
OTHER_FUNCTIONS_SETTINGS = {
    "vtriage.config.approval",
    "vtriage.config.falcon",
    "vtriage.config.intake",
    "vtriage.config.pollers",
    "vtriage.config.remediate",
    "vtriage.config.ticket",
}


def vtriage_modules_loaded(script: str) -> set[str]:
    """The vtriage modules a fresh interpreter holds after running `script` (the enrich handler's folder
    on its path, as Lambda has it)."""
    listing = "import sys, json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('vtriage'))))"
    output = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, 'functions/enrich')\n{script}\n{listing}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(output.stdout.strip().splitlines()[-1]))


def test_the_enrich_handler_loads_no_detectors_reader_and_no_other_functions_settings() -> None:
    # Given a fresh interpreter
    # When it imports the enrich handler and its composition root, as a cold start does
    loaded = vtriage_modules_loaded("import app\nimport vtriage.composition.enrich")

    # Then the dispatcher that picks a reader is there, and no reader, nor another function's settings,
    # nor what only types or serves another function
    assert {"vtriage.intake", "vtriage.intake.sources", "vtriage.config.enrich"} <= loaded
    assert loaded & (READERS | READER_HELPERS | OTHER_FUNCTIONS_SETTINGS | NOT_AT_START) == set()


def test_reading_a_guardduty_finding_loads_guardduty_reader_and_no_other_detectors() -> None:
    # Given a fresh interpreter and a real GuardDuty finding (as the API gives it)
    event = (EVENTS / "guardduty-iam-recon-malicious-ip-caller.json").relative_to(ROOT)
    read = (
        "from pathlib import Path\nfrom vtriage.intake import read_document\n"
        "from vtriage.intake.body import decode_body\n"
        f"result = read_document(decode_body(Path({str(event)!r}).read_text()))\n"
        "assert len(result.alerts) == 1, result"
    )

    # When it reads the event
    loaded = vtriage_modules_loaded(read)

    # Then GuardDuty's reader and the field readers are loaded, and no other detector's reader
    assert {"vtriage.intake.guardduty", "vtriage.intake.fields"} <= loaded
    assert loaded & READERS == {"vtriage.intake.guardduty"}
