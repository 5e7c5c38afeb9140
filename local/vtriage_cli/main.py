"""The `vtriage` command: run alert files through the whole pipeline locally (`run`, on moto), or act on
a deployed stack with your AWS credentials (`send`, `cases`, `rollback`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

EXIT_SETUP = 1
# What a shell reports for a command stopped by Ctrl-C (128 + SIGINT), and for one whose reader went away
# before it had written everything (128 + SIGPIPE, as `yes | head -1` ends).
EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED = 130, 141

Declare = Callable[[argparse.ArgumentParser], None]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (what is wrong, and where the help is) rather
    than the whole usage; subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# Each command's module is imported only when that command runs: the local runner's declares its options
# cheaply and loads moto (over a second) only once a record is to be queued; the operator commands' loads
# boto3 and rich. `vtriage --version`, `vtriage cases` or a refused file need neither of the other.
def _declare_run(run: argparse.ArgumentParser) -> None:
    from vtriage_local.cli import declare_run  # noqa: PLC0415

    declare_run(run)


def _declare_send(send: argparse.ArgumentParser) -> None:
    from vtriage_ops.cli import declare_send  # noqa: PLC0415

    declare_send(send)


def _declare_cases(cases: argparse.ArgumentParser) -> None:
    from vtriage_ops.cli import declare_cases  # noqa: PLC0415

    declare_cases(cases)


def _declare_rollback(rollback: argparse.ArgumentParser) -> None:
    from vtriage_ops.cli import declare_rollback  # noqa: PLC0415

    declare_rollback(rollback)


# The commands, each with the line `vtriage --help` shows and what declares its arguments and handler.
COMMANDS: dict[str, tuple[str, Declare]] = {
    "run": (
        "run alert files through the whole pipeline on a local AWS (moto) and VirusTotal replay",
        _declare_run,
    ),
    "send": ("push alert files to a deployed stack through its intake URL (SigV4-signed)", _declare_send),
    "cases": (
        "list the cases of a deployed stack, by status and account, most recently updated first",
        _declare_cases,
    ),
    "rollback": (
        "undo what a case's actions changed in a deployed stack's account, last action first",
        _declare_rollback,
    ),
}


def parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line of `vtriage`. Every command is listed with its summary; the one `argv` names (its
    first argument that is not an option: `vtriage` has no option taking a value) also gets its arguments,
    its module imported for them."""
    # Imported here, inside main's handling of Ctrl-C: importlib.metadata is most of this module's start-up.
    from importlib import metadata  # noqa: PLC0415

    version = f"vtriage {metadata.version('vtriage')}"
    command = _Parser(prog="vtriage", description=__doc__)
    command.add_argument("--version", action="version", version=version)
    commands = command.add_subparsers(dest="command", required=True)
    named = _command_named(argv)
    for name, (summary, declare) in COMMANDS.items():
        subcommand = commands.add_parser(name, help=summary)
        subcommand.add_argument("--version", action="version", version=version)
        if name == named:
            declare(subcommand)
    return command


def _command_named(argv: Sequence[str]) -> str | None:
    named = next((argument for argument in argv if not argument.startswith("-")), None)
    return named if named in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vtriage`: the subcommand's exit status (each says its own: 0 done, 2 done with
    some input refused or pending, 1 a usage or set-up error, as for a command line argparse refuses);
    130 when Ctrl-C stopped it, at any moment, its start-up included, on one line; 141 when its output's
    reader went away (`vtriage run ... | head`), quietly."""
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            arguments = parser(given).parse_args(given)
        except SystemExit as exit_:
            return 0 if exit_.code == 0 else EXIT_SETUP
        status: int = arguments.handler(arguments)
    except KeyboardInterrupt:
        named = _command_named(given)
        print(f"vtriage{f' {named}' if named else ''}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_closed_outputs()
        return EXIT_OUTPUT_CLOSED
    return status


def _quiet_closed_outputs() -> None:
    """Point a standard stream whose reader is gone at the null device, so that the interpreter's last
    flush at exit does not fail again (a traceback and status 120)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            # A stream that is not a file (a test's StringIO) never gets here.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


if __name__ == "__main__":
    sys.exit(main())
