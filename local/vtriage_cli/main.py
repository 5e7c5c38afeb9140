"""The `vtriage` command: run alert files through the whole pipeline locally (`run`, on moto), or act on
a deployed stack with your AWS credentials (`send`, `cases`, `rollback`)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from vtriage_local.cli import EXIT_INTERRUPTED, add_run_command, version
from vtriage_ops.cli import add_commands as add_operator_commands


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (what is wrong, and where the help is) rather
    than the whole usage; subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    """The command line of `vtriage`: each subcommand names its handler."""
    command = _Parser(prog="vtriage", description=__doc__)
    command.add_argument("--version", action="version", version=version())
    commands = command.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    add_operator_commands(commands)
    return command


def main(argv: list[str] | None = None) -> int:
    """Entry point of `vtriage`: the subcommand's exit status (each says its own: 0 done, 2 done with
    some input refused or pending, 1 a usage or set-up error, as for a command line argparse refuses;
    130 when Ctrl-C stopped it)."""
    try:
        arguments = parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code == 0 else 1
    try:
        status: int = arguments.handler(arguments)
    except KeyboardInterrupt:
        print(f"vtriage {arguments.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


if __name__ == "__main__":
    sys.exit(main())
