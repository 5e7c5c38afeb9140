"""The `vtriage` command: run alert files through the whole pipeline locally (`run`, on moto), or act on
a deployed stack with your AWS credentials (`send`, `cases`, `rollback`)."""

from __future__ import annotations

import argparse
import sys

from vtriage_local.cli import add_run_command
from vtriage_ops.cli import add_commands as add_operator_commands


def parser() -> argparse.ArgumentParser:
    """The command line of `vtriage`: each subcommand names its handler."""
    command = argparse.ArgumentParser(prog="vtriage", description=__doc__)
    commands = command.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    add_operator_commands(commands)
    return command


def main(argv: list[str] | None = None) -> int:
    """Entry point of `vtriage`: the subcommand's exit status (each says its own: 0 done, 2 done with
    some input refused or pending, 1 a usage or set-up error, as for a command line argparse refuses)."""
    try:
        arguments = parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code == 0 else 1
    status: int = arguments.handler(arguments)
    return status


if __name__ == "__main__":
    sys.exit(main())
