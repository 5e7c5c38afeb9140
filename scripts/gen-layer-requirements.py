#!/usr/bin/env python3
"""Lock the Lambda layer's dependencies: layers/common/requirements.txt from pyproject.toml, with hashes.

pyproject.toml's [project].dependencies is the one place the layer's runtime dependencies are declared,
as open ranges. This script (`make layer-requirements`, needs PyPI) resolves them with uv for the layer's
target, the Python version and platform layers/common/Makefile installs for, and writes every
distribution the layer gets, transitive ones included, pinned with `==` and the hashes of its files.
The layer's Makefile installs the file with `pip install --require-hashes --no-deps`, so a changed or
substituted file fails the build. uv, not pip-compile, because pip-compile can only resolve for the
interpreter it runs in, and a developer's machine is rarely Lambda's Python on arm64.

With --check (`make lint`, no network) it fails when the lock no longer matches: made from another
dependency list or for another target, a dependency missing or pinned outside its range, a line that
is not pinned with `==` or has no hash.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT_PATH = PROJECT_ROOT / "pyproject.toml"
LAYER_MAKEFILE_PATH = PROJECT_ROOT / "layers" / "common" / "Makefile"
REQUIREMENTS_PATH = PROJECT_ROOT / "layers" / "common" / "requirements.txt"

HEADER = (
    "# The Lambda layer's dependencies, locked: exact versions and the hashes of their files, for the\n"
    "# target below (layers/common/Makefile), installed with `pip install --require-hashes --no-deps`.\n"
    "# Generated from [project].dependencies in pyproject.toml by `make layer-requirements`\n"
    "# (scripts/gen-layer-requirements.py, with uv). Do not edit; `make lint` checks it.\n"
)
# The line that records what the lock was made from, so that --check can tell a stale lock offline.
INPUTS_PREFIX = "# made from: "
ARCHITECTURES = ("aarch64", "x86_64")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


class LockError(Exception):
    """Raised when the inputs of the lock cannot be read."""


def declared_dependencies(pyproject_path: Path) -> list[str]:
    """[project].dependencies as declared, one requirement string each, sorted."""
    with pyproject_path.open("rb") as stream:
        project = tomllib.load(stream).get("project", {})
    dependencies = project.get("dependencies")
    if not isinstance(dependencies, list) or not all(isinstance(item, str) for item in dependencies):
        raise LockError(f"{pyproject_path}: [project].dependencies must be a list of strings")
    for dependency in dependencies:
        try:
            Requirement(dependency)
        except InvalidRequirement as error:
            raise LockError(f"{pyproject_path}: {dependency!r} is not a requirement: {error}") from None
    return sorted(dependency.strip() for dependency in dependencies)


def layer_target(makefile_path: Path) -> dict[str, str]:
    """The Python version and pip platform tag the layer's Makefile installs for."""
    text = makefile_path.read_text(encoding="utf-8")
    target = {}
    for variable in ("PYTHON_VERSION", "PLATFORM"):
        match = re.search(rf"^{variable} := (\S+)$", text, re.MULTILINE)
        if match is None:
            raise LockError(f"{makefile_path}: no `{variable} := ...` line")
        target[variable.lower()] = match.group(1)
    uv_platform(target["platform"])  # refuses a platform the lock could not be resolved for
    return {"python": target["python_version"], "platform": target["platform"]}


def uv_platform(platform: str) -> str:
    """uv's --python-platform for a pip platform tag: manylinux2014_aarch64 -> aarch64-manylinux2014."""
    for architecture in ARCHITECTURES:
        if platform.endswith(f"_{architecture}"):
            return f"{architecture}-{platform.removesuffix(f'_{architecture}')}"
    raise LockError(f"platform {platform!r}: expected a manylinux tag ending in one of {ARCHITECTURES}")


def inputs_line(dependencies: list[str], target: dict[str, str]) -> str:
    """The header line naming the target and dependency list the lock is made from."""
    return INPUTS_PREFIX + json.dumps({**target, "dependencies": dependencies}) + "\n"


def generate(uv: str, pyproject_path: Path, makefile_path: Path, output: Path, *, upgrade: bool) -> str:
    """The lock's text, resolved by uv (keeping the current pins that still fit unless `upgrade`)."""
    dependencies = declared_dependencies(pyproject_path)
    target = layer_target(makefile_path)
    with tempfile.TemporaryDirectory() as scratch:
        # uv keeps the pins of the file it writes to: start from the current lock.
        resolved = Path(scratch) / "requirements.txt"
        if output.exists():
            shutil.copyfile(output, resolved)
        command = [uv, "pip", "compile", pyproject_path.name, "--generate-hashes", "--only-binary", ":all:"]
        command += ["--python-version", target["python"]]
        command += ["--python-platform", uv_platform(target["platform"])]
        command += ["--no-header", "--quiet", "--output-file", str(resolved)]
        if upgrade:
            command.append("--upgrade")
        # Run beside pyproject.toml so that uv's "# via" notes name it without a machine path.
        subprocess.run(command, cwd=pyproject_path.parent, check=True)  # noqa: S603 (our own command line)
        body = resolved.read_text(encoding="utf-8")
    return HEADER + inputs_line(dependencies, target) + body


def pinned(lock_text: str) -> tuple[dict[str, str], list[str]]:
    """The lock's pins (canonical name -> version), and one line for each entry not pinned and hashed."""
    pins: dict[str, str] = {}
    problems: list[str] = []
    entries = re.sub(r"\\\n", " ", lock_text).splitlines()
    for entry in (line.split(" #", 1)[0].strip() for line in entries if not line.lstrip().startswith("#")):
        if not entry:
            continue
        requirement_text = entry.split(" --", 1)[0].strip()
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement:
            problems.append(f"{requirement_text!r} is not a requirement")
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            problems.append(f"{requirement_text!r} is not pinned with ==")
            continue
        if not HASH.search(entry):
            problems.append(f"{requirement_text!r} has no --hash=sha256:...")
        pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins, problems


def target_environment(target: dict[str, str]) -> dict[str, str]:
    """The PEP 508 marker values of Lambda's Python on the layer's platform, for dependencies with markers."""
    python = target["python"]
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": next(a for a in ARCHITECTURES if target["platform"].endswith(f"_{a}")),
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
    }


def stale(lock_text: str, dependencies: list[str], target: dict[str, str]) -> list[str]:
    """Why the lock does not fit the dependencies and target; empty when it does."""
    problems: list[str] = []
    recorded = [line + "\n" for line in lock_text.splitlines() if line.startswith(INPUTS_PREFIX)]
    if recorded != [inputs_line(dependencies, target)]:
        problems.append(
            "it was made from another dependency list or target than pyproject.toml's and the Makefile's"
        )
    pins, entry_problems = pinned(lock_text)
    problems += entry_problems
    for dependency in dependencies:
        requirement = Requirement(dependency)
        if requirement.marker is not None and not requirement.marker.evaluate(target_environment(target)):
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{dependency!r} is not in it")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} is outside {dependency!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Write the lock, or with --check report whether it still fits pyproject.toml (exit 1 when not)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the lock is missing or stale")
    parser.add_argument("--upgrade", action="store_true", help="move every pin to the newest allowed")
    parser.add_argument("--uv", default="uv", help="the uv executable (default: uv on PATH)")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT_PATH, help=argparse.SUPPRESS)
    parser.add_argument("--makefile", type=Path, default=LAYER_MAKEFILE_PATH, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=REQUIREMENTS_PATH, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)

    try:
        dependencies = declared_dependencies(arguments.pyproject)
        target = layer_target(arguments.makefile)
        if arguments.check:
            if not arguments.output.exists():
                problems = ["it does not exist"]
            else:
                problems = stale(arguments.output.read_text(encoding="utf-8"), dependencies, target)
            for problem in problems:
                print(f"{arguments.output}: {problem}", file=sys.stderr)
            if problems:
                print("run `make layer-requirements` (needs PyPI)", file=sys.stderr)
                return 1
            return 0
        text = generate(
            arguments.uv, arguments.pyproject, arguments.makefile, arguments.output, upgrade=arguments.upgrade
        )
    except LockError as error:
        print(error, file=sys.stderr)
        return 2
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"uv pip compile failed: {error}", file=sys.stderr)
        return 2
    problems = stale(text, dependencies, target)
    if problems:
        print("\n".join(f"uv's lock: {problem}" for problem in problems), file=sys.stderr)
        return 1
    current = arguments.output.read_text(encoding="utf-8") if arguments.output.exists() else None
    if current != text:
        arguments.output.write_text(text, encoding="utf-8")
        print(f"wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
