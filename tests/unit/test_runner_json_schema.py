"""README's `--json` schema names every key `vtriage run` writes at the top of its document and in its
`stats`, the document a run writes (`ReadRecords.document`, here through a run whose every record is refused
as read, which loads no moto)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from vtriage_local.alert_files import read_alert_files
from vtriage_local.preflight import ReadRecords, VirusTotalSource, nobody_watches

README = Path(__file__).resolve().parents[2] / "README.md"


def _json_schema() -> str:
    """The block of README that follows "`--json` prints one document"."""
    text = README.read_text(encoding="utf-8")
    start = text.index("`--json` prints one document on stdout and nothing else:")
    block = re.search(r"```\n(.*?)```", text[start:], re.DOTALL)
    assert block is not None, "README's --json schema block is missing"
    return block.group(1)


def test_every_stats_key_the_runner_writes_is_in_the_readmes_schema(tmp_path: Path) -> None:
    # Given the document of a run (a file that is not JSON: refused as read, nothing started)
    notes = tmp_path / "notes.json"
    notes.write_text("the alert is in the ticket", encoding="utf-8")
    records = ReadRecords.checked(read_alert_files([str(notes)], io.BytesIO()), nobody_watches)
    document = records.refused_document(VirusTotalSource())

    # When README's schema is read
    schema = _json_schema()
    stats_line = schema[schema.index('"stats": {') : schema.index('"virustotal"')]

    # Then each top-level key and each stats key the runner writes is named there
    assert [key for key in document if f'"{key}"' not in schema] == []
    assert [key for key in document["stats"] if f'"{key}"' not in stats_line] == []
