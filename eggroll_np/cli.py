"""The `eggroll-np` command line: info (and, as they land, train and bench)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

__all__ = ["main", "build_parser"]

# Subcommands register here: name -> (help, add_arguments(parser), run(args) -> exit code).
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = {}


def command(name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator registering `run(args) -> int` as subcommand `name`."""

    def register(run: Callable[..., int]) -> Callable[..., int]:
        COMMANDS[name] = (help_text, add_arguments, run)
        return run

    return register


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the information as JSON")


@command("info", "show version, extensions, SIMD level, CUDA device and BLAS", _info_args)
def _run_info(args: argparse.Namespace) -> int:
    from .sysinfo import format_info, system_info

    info = system_info()
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0


def _load_subcommands() -> None:
    # Optional subcommand modules register themselves on import.
    import importlib

    for mod in ("eggroll_np.bench", "eggroll_np.train"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are ONE line on stderr (exit 2), like every other CLI error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, _one_line(f"{self.prog}: error: {message} (see {self.prog} --help)"))


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every registered subcommand."""
    from . import __version__

    _load_subcommands()
    parser = _Parser(
        prog="eggroll-np",
        description="EGGROLL evolution strategies for NumPy and CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"eggroll_np {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def _stdout_closed() -> int:
    # The reader went away (`eggroll-np info | head`): stop quietly, as other Unix tools do.
    # Point stdout at /dev/null so the interpreter's final flush cannot raise again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `eggroll-np` console script.

    Every error is one line on stderr and exit status 2 (130 after Ctrl-C); a closed stdout
    (a pipe into `head`) ends the command quietly.
    """
    parser = build_parser()
    args = None
    try:
        try:
            args = parser.parse_args(argv)
            code = int(args._run(args) or 0)
        finally:
            sys.stdout.flush()  # inside the try: a closed pipe must surface here, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        parser.exit(2, _one_line(f"eggroll-np {args.command}: error: {exc}"))


if __name__ == "__main__":
    sys.exit(main())
