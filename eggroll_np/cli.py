"""The `eggroll-np` command line: info (and, as they land, train and bench)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

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


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every registered subcommand."""
    from . import __version__

    _load_subcommands()
    parser = argparse.ArgumentParser(
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
