"""The `eggroll-np` command line: an explicit table of subcommands (info, train, bench)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main", "build_parser"]

#: name -> module defining HELP, add_arguments(parser) and run(args) -> exit code. Each module
#: imports its heavy dependencies inside `run`, so building the parser stays cheap.
COMMANDS: dict[str, str] = {
    "info": "eggroll_np.cli.info",
    "train": "eggroll_np.cli.train",
    "bench": "eggroll_np.cli.bench",
}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand of COMMANDS."""
    from .. import __version__

    parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `eggroll-np` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.exit(2, f"eggroll-np {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
