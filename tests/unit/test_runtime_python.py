"""The functions' runtime Python: named once, in template.yaml's Globals, and found on the machine for
`sam build` and the cold start benchmark (vtriage_local.runtime_python)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vtriage_local.runtime_python import find_runtime_python, runtime_name
from vtriage_local.template import PROJECT_ROOT, load_template

THIS_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_runtime_is_the_one_the_templates_globals_give_the_functions() -> None:
    # Given the template
    template = load_template()

    # When the runtime is read
    runtime = runtime_name(template)

    # Then it is the Globals' runtime, and the layer's Makefile builds for that Python
    assert runtime == template["Globals"]["Function"]["Runtime"]
    makefile = (PROJECT_ROOT / "layers" / "common" / "Makefile").read_text()
    assert f"PYTHON_VERSION := {runtime.removeprefix('python')}\n" in makefile


def test_a_template_whose_functions_do_not_run_python_is_refused_naming_the_runtime() -> None:
    # Given a template whose Globals give another runtime
    template = {"Globals": {"Function": {"Runtime": "nodejs22.x"}}}

    # When / Then the runtime cannot be read, and the error says what was found
    with pytest.raises(ValueError, match=re.escape("nodejs22.x")):
        runtime_name(template)


def _only_on_path(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds only `folder`; no pyenv, no uv."""
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("PYENV_ROOT", str(folder / "no-pyenv"))
    monkeypatch.setattr("vtriage_local.runtime_python.UV", folder / "no-uv")


def test_an_interpreter_of_the_runtimes_version_on_path_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given this interpreter on PATH under the name of its version, as `python3.N`
    named = tmp_path / f"python{THIS_VERSION}"
    named.symlink_to(sys.executable)
    _only_on_path(tmp_path, monkeypatch)

    # When the runtime `python3.N` is looked for
    found = find_runtime_python(f"python{THIS_VERSION}")

    # Then it is found, and it is that version
    assert found == named
    version = subprocess.run(
        [str(found), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == THIS_VERSION


def test_an_interpreter_named_for_the_runtime_but_of_another_version_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given this interpreter on PATH under another version's name (as a pyenv shim whose version is
    # not installed would be)
    (tmp_path / "python3.99").symlink_to(sys.executable)
    _only_on_path(tmp_path, monkeypatch)

    # When the runtime python3.99 is looked for
    found = find_runtime_python("python3.99")

    # Then there is none
    assert found is None
