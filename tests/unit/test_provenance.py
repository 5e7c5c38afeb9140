"""Real data copied into the repository is the data its PROVENANCE.md names: each copy's SHA-256, as
taken, is written there in `sha256sum` form, and every real file of the folder has one."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$", re.MULTILINE)
CODE_BLOCK = re.compile(r"^```\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# Folders of copied data, and their files that are neither copies nor named synthetic-..., with why.
FOLDERS: dict[str, dict[str, str]] = {
    "events": {
        "invalid/sqs-batch-mixed.json": "assembled from the powertools SQS event's shape and two bodies",
    },
    "tests/fixtures/vt": {},
    "local/vtriage_local/recordings": {},
}


def checksums(folder: Path) -> dict[str, str]:
    """The `sha256sum` lines of the folder's PROVENANCE.md code blocks: file (relative) -> SHA-256."""
    text = (folder / "PROVENANCE.md").read_text(encoding="utf-8")
    return {
        name: digest for block in CODE_BLOCK.findall(text) for digest, name in CHECKSUM_LINE.findall(block)
    }


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_every_copied_file_has_the_sha256_its_provenance_records(folder: str) -> None:
    # Given the checksums a folder's PROVENANCE.md records
    base = ROOT / folder
    recorded = checksums(base)
    assert recorded, f"{folder}/PROVENANCE.md records no checksum"

    # When each named file is hashed as it is in the repository
    actual = {
        name: hashlib.sha256((base / name).read_bytes()).hexdigest() if (base / name).is_file() else "missing"
        for name in recorded
    }

    # Then each is the copy recorded
    assert actual == recorded


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_every_real_file_of_the_folder_has_a_recorded_checksum(folder: str) -> None:
    # Given the folder's JSON files that are not synthetic
    base = ROOT / folder
    real = {
        str(path.relative_to(base)) for path in base.rglob("*.json") if not path.name.startswith("synthetic-")
    }

    # Then each one's checksum is recorded, or why it has none
    assert real - set(FOLDERS[folder]) == set(checksums(base))
