"""The functions' runtime Python on this machine: the interpreter `sam build` builds the layer with
(scripts/check-template.sh) and the cold start benchmark measures with (bench.cold_start).

template.yaml's Globals name the runtime (`python3.13`); a working interpreter of that version with pip
is looked for on PATH, then among pyenv's versions, then with uv (`uv python find`).

`python -m vtriage_local.runtime_python` prints the interpreter's directory, or says what to install
and exits 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from vtriage_local.template import PROJECT_ROOT, load_template

UV = PROJECT_ROOT / ".venv-tools" / "bin" / "uv"


def runtime_name(template: dict[str, Any] | None = None) -> str:
    """The functions' runtime, as template.yaml's Globals give it: `python3.13`."""
    document = template if template is not None else load_template()
    runtime = document.get("Globals", {}).get("Function", {}).get("Runtime")
    if not isinstance(runtime, str) or not runtime.startswith("python3."):
        raise ValueError(f"template.yaml's Globals give no Python runtime (Function.Runtime is {runtime!r})")
    return runtime


def _is_runtime_python(candidate: Path, version: str) -> bool:
    # pyenv's shims exist on PATH even when the version behind them is not installed: run it to know.
    right_version = "import sys; sys.exit('%d.%d' % sys.version_info[:2] != sys.argv[1])"
    for arguments in (["-c", right_version, version], ["-m", "pip", "--version"]):
        try:
            completed = subprocess.run(  # noqa: S603 (an interpreter this module looked for)
                [str(candidate), *arguments], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if completed.returncode != 0:
            return False
    return True


def _pyenv_candidates(command: str, version: str) -> list[Path]:
    root = os.environ.get("PYENV_ROOT")
    pyenv = shutil.which("pyenv")
    if root is None and pyenv is not None:
        found = subprocess.run(  # noqa: S603 (pyenv, found on PATH)
            [pyenv, "root"], capture_output=True, text=True, check=False
        )
        root = found.stdout.strip() or None
    if root is None:
        return []
    installed = (Path(root) / "versions").glob(f"{version}.*/bin/{command}")
    # The newest patch release first: versions/3.13.1/bin/python3.13 before versions/3.13.0/bin/...
    return sorted(installed, key=lambda path: _release(path.parents[1].name), reverse=True)


def _release(name: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def _uv_candidate(command: str, version: str) -> list[Path]:
    uv = shutil.which("uv") or (str(UV) if UV.exists() else None)
    if uv is None:
        return []
    found = subprocess.run(  # noqa: S603 (uv, found on PATH or in the tools environment)
        [uv, "python", "find", version], capture_output=True, text=True, check=False
    )
    if found.returncode != 0 or not found.stdout.strip():
        return []
    interpreter = Path(found.stdout.strip())
    return [interpreter.parent / command, interpreter]


def find_runtime_python(runtime: str | None = None) -> Path | None:
    """A working interpreter of the functions' runtime, with pip, on this machine; None when there is
    none on PATH, in pyenv or through uv."""
    command = runtime or runtime_name()
    version = command.removeprefix("python")
    on_path = shutil.which(command)
    candidates = ([Path(on_path)] if on_path else []) + _pyenv_candidates(command, version)
    candidates += _uv_candidate(command, version)
    return next((candidate for candidate in candidates if _is_runtime_python(candidate, version)), None)


def main() -> int:
    """Print the directory of the runtime's interpreter, for scripts/check-template.sh."""
    runtime = runtime_name()
    interpreter = find_runtime_python(runtime)
    if interpreter is None:
        version = runtime.removeprefix("python")
        print(
            f"no working {runtime} with pip found (looked on PATH, in pyenv and with uv): install Python "
            f"{version}, e.g. 'pyenv install {version}' or 'uv python install {version}', and run again",
            file=sys.stderr,
        )
        return 1
    print(interpreter.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
