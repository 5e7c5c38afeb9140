"""The Lambda layer's lock (layers/common/requirements.txt): every distribution pinned with its hashes,
within pyproject.toml's ranges, installed by the layer's Makefile with hash checking, and the offline
check `make lint` runs (scripts/gen-layer-requirements.py --check) failing on a lock that no longer fits.

None of these tests reaches the network: regenerating the lock (`make layer-requirements`) does.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LAYER = PROJECT_ROOT / "layers" / "common"
LOCK = LAYER / "requirements.txt"
PYPROJECT = PROJECT_ROOT / "pyproject.toml"
GENERATOR = PROJECT_ROOT / "scripts" / "gen-layer-requirements.py"
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def _entries(lock_text: str) -> list[str]:
    """The lock's requirement lines, each with its continuation lines joined, comments left out."""
    lines = lock_text.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _runtime_dependencies() -> list[Requirement]:
    with PYPROJECT.open("rb") as stream:
        return [Requirement(text) for text in tomllib.load(stream)["project"]["dependencies"]]


def _pins(lock_text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for entry in _entries(lock_text):
        name, _, rest = entry.partition("==")
        pins[canonicalize_name(name)] = rest.split()[0]
    return pins


def test_every_line_of_the_layer_lock_is_pinned_with_its_hashes() -> None:
    # Given the committed lock
    entries = _entries(LOCK.read_text(encoding="utf-8"))

    # Then each distribution is pinned to one version and carries at least one sha256 of its files
    assert entries
    for entry in entries:
        requirement = entry.split(" --hash", 1)[0].strip()
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][0-9A-Za-z.+!-]*", requirement), entry
        assert SHA256.search(entry), f"{requirement} has no hash"
        assert all(option.startswith("--hash=sha256:") for option in entry.split()[1:]), entry
    # And it holds the dependencies of the dependencies too: pip's --no-deps installs nothing else
    pins = _pins(LOCK.read_text(encoding="utf-8"))
    assert {"botocore", "pydantic-core", "urllib3"} <= pins.keys()


def test_every_runtime_dependency_of_pyproject_is_locked_within_its_range() -> None:
    # Given pyproject.toml's runtime dependencies and the committed lock
    pins = _pins(LOCK.read_text(encoding="utf-8"))

    # Then each dependency is pinned, to a version its range allows
    for requirement in _runtime_dependencies():
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement} is not in {LOCK.name}"
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement.name}=={version}"


def test_the_layer_build_installs_exactly_the_lock_and_checks_every_hash() -> None:
    # When make shows the commands the layer's build runs (as `sam build` runs them)
    dry_run = ["make", "--dry-run", "--no-print-directory", "-C", str(LAYER), "build-CommonLayer"]
    result = subprocess.run([*dry_run, "ARTIFACTS_DIR=out"], capture_output=True, text=True, check=True)

    # Then the dependencies come from the lock only, each file checked against its hashes, as wheels
    # for the layer's Python and platform
    commands = [shlex.split(line) for line in result.stdout.replace("\\\n", " ").splitlines()]
    installs = [command for command in commands if command[1:4] == ["-m", "pip", "install"]]
    assert len(installs) == 1
    install = installs[0]
    assert install[install.index("--requirement") + 1] == LOCK.name
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(install)
    platform = re.search(r"^PLATFORM := (\S+)$", (LAYER / "Makefile").read_text(encoding="utf-8"), re.M)
    assert platform is not None
    assert install[install.index("--platform") + 1] == platform[1]


def test_the_committed_lock_passes_the_check_make_lint_runs() -> None:
    # When the check runs on the committed files
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )

    # Then it finds nothing to change
    assert result.returncode == 0, result.stderr


def _narrow_pydantic_in_pyproject(files: dict[str, Path]) -> None:
    text = files["pyproject"].read_text(encoding="utf-8")
    files["pyproject"].write_text(re.sub(r'"pydantic[^"]*"', '"pydantic>=99"', text), encoding="utf-8")


def _add_a_dependency_to_pyproject(files: dict[str, Path]) -> None:
    text = files["pyproject"].read_text(encoding="utf-8")
    files["pyproject"].write_text(text.replace('"boto3', '"httpx>=0.27",\n    "boto3', 1), encoding="utf-8")


def _pin_pydantic_by_hand(files: dict[str, Path]) -> None:
    text = files["lock"].read_text(encoding="utf-8")
    hand_pinned = re.sub(r"^pydantic==\S+", "pydantic==1.10.0", text, flags=re.M)
    files["lock"].write_text(hand_pinned, encoding="utf-8")


def _drop_the_hashes_of_idna(files: dict[str, Path]) -> None:
    text = files["lock"].read_text(encoding="utf-8")
    idna_hashes = re.compile(r"^idna==(\S+) \\\n(    --hash=\S+( \\)?\n)+", flags=re.M)
    files["lock"].write_text(idna_hashes.sub(r"idna==\1\n", text), encoding="utf-8")


def _loosen_the_pin_of_six(files: dict[str, Path]) -> None:
    text = files["lock"].read_text(encoding="utf-8")
    files["lock"].write_text(re.sub(r"^six==", "six>=", text, flags=re.M), encoding="utf-8")


def _move_the_layer_to_x86(files: dict[str, Path]) -> None:
    text = files["makefile"].read_text(encoding="utf-8")
    files["makefile"].write_text(text.replace("_aarch64\n", "_x86_64\n"), encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (_narrow_pydantic_in_pyproject, r"pydantic==\S+ is outside 'pydantic>=99'"),
        (_add_a_dependency_to_pyproject, r"'httpx>=0\.27' is not in it"),
        (_pin_pydantic_by_hand, r"pydantic==1\.10\.0 is outside 'pydantic"),
        (_drop_the_hashes_of_idna, r"'idna==\S+' has no --hash"),
        (_loosen_the_pin_of_six, r"'six>=\S+' is not pinned with =="),
        (_move_the_layer_to_x86, r"made from another dependency list or target"),
    ],
)
def test_the_lock_check_fails_on_a_lock_that_no_longer_fits(
    tmp_path: Path, change: Callable[[dict[str, Path]], None], reported: str
) -> None:
    # Given copies of pyproject.toml, the layer's Makefile and the lock, one of them changed
    files = {name: tmp_path / name for name in ("pyproject", "makefile", "lock")}
    shutil.copyfile(PYPROJECT, files["pyproject"])
    shutil.copyfile(LAYER / "Makefile", files["makefile"])
    shutil.copyfile(LOCK, files["lock"])
    before = {name: path.read_text(encoding="utf-8") for name, path in files.items()}
    change(files)
    assert {name: path.read_text(encoding="utf-8") for name, path in files.items()} != before

    # When the check runs on them
    check = [sys.executable, str(GENERATOR), "--check", "--pyproject", str(files["pyproject"])]
    check += ["--makefile", str(files["makefile"]), "--output", str(files["lock"])]
    result = subprocess.run(check, capture_output=True, text=True, check=False)

    # Then it fails, says what does not fit, and how to regenerate the lock
    assert result.returncode == 1
    assert re.search(reported, result.stderr), result.stderr
    assert "make layer-requirements" in result.stderr
