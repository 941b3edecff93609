"""The `eggroll-np` command line: one table of subcommands (info, train, bench, gpu-check)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import _startup

__all__ = ["COMMANDS", "main", "build_parser"]

#: name -> module defining HELP, add_arguments(parser) and run(args) -> exit code. Each module
#: imports its heavy dependencies inside `run`, so building the parser stays cheap.
COMMANDS: dict[str, str] = {
    "info": "eggroll_np.cli.info",
    "train": "eggroll_np.cli.train",
    "bench": "eggroll_np.cli.bench",
    "gpu-check": "eggroll_np.cli.gpu_check",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are ONE line on stderr (exit 2), like every other CLI error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, _one_line(f"{self.prog}: error: {message} (see {self.prog} --help)"))


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand of COMMANDS."""
    from .. import __version__

    parser = _Parser(
        prog="eggroll-np",
        description="EGGROLL evolution strategies for NumPy and CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"eggroll_np {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
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
    args = None
    try:
        try:
            parser = build_parser()
            _startup.release()  # from here a Ctrl-C is a KeyboardInterrupt, handled below
            args = parser.parse_args(argv)
            code = int(args._run(args) or 0)
        finally:
            sys.stdout.flush()  # inside the try: a closed pipe must surface here, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        # The command is over (a training run has saved its checkpoint): one more Ctrl-C must
        # not turn exit 130 into a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(_startup.MESSAGE, file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        prog = "eggroll-np" if args is None else f"eggroll-np {args.command}"
        sys.stderr.write(_one_line(f"{prog}: error: {exc}"))
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
