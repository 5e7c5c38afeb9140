#!/usr/bin/env python3
"""Check that a built layer ships bytecode for every module, usable whatever its files' times.

Run by scripts/check-template.sh after `sam build`, with the functions' Python (template.yaml's
Runtime): the .pyc of each .py must exist for this interpreter and be an unchecked-hash .pyc
(PEP 552), which Python loads without comparing it with the source, as it must on Lambda's read-only
/opt.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# PEP 552: the .pyc's flags word follows its 4-byte magic; bit 0 set = hash-based, bit 1 = check source.
_HASH_BASED = 0b01
_CHECK_SOURCE = 0b10


def problems(root: Path) -> tuple[int, list[str]]:
    """The number of modules under `root`, and one line for each whose bytecode is missing or checked."""
    found: list[str] = []
    modules = sorted(root.rglob("*.py"))
    for source in modules:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        if not compiled.is_file():
            found.append(f"{source.relative_to(root)}: no {compiled.name}")
            continue
        header = compiled.read_bytes()[:8]
        if header[:4] != importlib.util.MAGIC_NUMBER:
            found.append(f"{source.relative_to(root)}: {compiled.name} is for another Python")
            continue
        flags = int.from_bytes(header[4:8], "little")
        if flags & _HASH_BASED == 0 or flags & _CHECK_SOURCE:
            found.append(f"{source.relative_to(root)}: {compiled.name} is checked against its source")
    return len(modules), found


def main() -> int:
    """Exit 1, naming the modules, when any lacks usable bytecode."""
    if len(sys.argv) != 2:
        print("usage: check-layer-bytecode.py BUILT_LAYER_PYTHON_DIR", file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    count, found = problems(root)
    if count == 0:
        print(f"{root} holds no module: was the layer built?", file=sys.stderr)
        return 1
    for line in found[:20]:
        print(line, file=sys.stderr)
    if found:
        print(f"{len(found)} of {count} modules lack unchecked-hash bytecode", file=sys.stderr)
        return 1
    print(f"{count} modules, each with unchecked-hash bytecode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
