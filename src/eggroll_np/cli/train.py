"""`eggroll-np train NAME`: the options of every workload and the summary line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from .. import optim, schedule, shaping
from ..training.run_folder import CHECKPOINT, METRICS, PLOT, RUN_FILE
from ..training.workloads import NAMES, Workload, get
from .threads_option import add_threads_argument

__all__ = ["HELP", "add_arguments", "run", "format_summary"]

HELP = f"train a real workload ({', '.join(NAMES)})"


def _common_arguments(p: argparse.ArgumentParser, w: Workload) -> None:
    d = w.defaults
    g = p.add_argument_group("evolution strategy")
    g.add_argument(
        "--population", type=int, help=f"members per generation, even (default {d['population']})"
    )
    g.add_argument("--sigma", type=float, help=f"noise scale (default {d['sigma']})")
    g.add_argument("--lr", type=float, help=f"learning rate (default {d['lr']})")
    g.add_argument(
        "--lr-schedule",
        choices=schedule.SCHEDULES,
        help="decay of the learning rate over --generations "
        f"(default {d.get('lr_schedule', 'constant')})",
    )
    g.add_argument(
        "--lr-final",
        type=float,
        help="learning rate at the end of a linear/cosine schedule "
        f"(default {d.get('lr_final', 0.0)})",
    )
    g.add_argument(
        "--lr-decay-steps",
        type=int,
        metavar="N",
        help="generations a linear/cosine schedule decays over (default --generations); on "
        "--resume, stretches the run's schedule to N generations",
    )
    g.add_argument(
        "--rank", type=int, help=f"rank of each matrix perturbation (default {d['rank']})"
    )
    g.add_argument(
        "--generations", type=int, help=f"total generations (default {d['generations']})"
    )
    g.add_argument(
        "--seed", type=int, help="seed of the noise, the data split and the minibatches (default 0)"
    )
    g.add_argument("--optimizer", choices=optim.OPTIMIZERS, help=f"(default {d['optimizer']})")
    g.add_argument(
        "--shaping",
        choices=tuple(shaping.SHAPINGS),
        help=f"fitness shaping (default {d['shaping']})",
    )
    r = p.add_argument_group("run")
    r.add_argument("--out", metavar="DIR", help=f"output directory (default runs/{w.name})")
    r.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue from a checkpoint.npz (the run's options are read from it; options given "
        "with other values are refused)",
    )
    r.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        metavar="K",
        help="save every K generations (default 50)",
    )
    add_threads_argument(r)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    d = p.add_argument_group("distributed (needs the ray extra)")
    d.add_argument(
        "--workers",
        type=int,
        metavar="K",
        help="evaluate the population on K Ray actors that exchange only fitness scalars "
        "(default: in this process)",
    )
    d.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="an existing Ray cluster, e.g. auto or HOST:6379 (default: start a local Ray)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One sub-parser per workload: the ES and run options, then the workload's own."""
    sub = p.add_subparsers(dest="workload", metavar="NAME")
    sub.required = True
    for name in NAMES:
        w = get(name)
        wp = sub.add_parser(
            name,
            help=w.help,
            description=f"{w.help}. Writes {METRICS}, {PLOT}, {CHECKPOINT}, {RUN_FILE} and "
            "summary.json to --out; Ctrl-C saves a checkpoint to resume from.",
        )
        _common_arguments(wp, w)
        w.add_arguments(wp)


def format_summary(summary: Mapping[str, Any], metric: str, out: str) -> str:
    """One line: the workload's metric first, then everything else evaluated (a verdict and a
    sample are printed on lines of their own)."""
    skip = {"workload", "generations", "train_s", "wall_s", "sample", "verdict", metric}
    skip |= {"resumed_at_generation", "session_train_s"}
    rest = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in summary.items()
        if k not in skip
    )
    if "resumed_at_generation" in summary:
        took = (
            f"training {summary['train_s']:.1f} s in all (resumed at generation "
            f"{summary['resumed_at_generation']}; this session {summary['wall_s']:.1f} s)"
        )
    else:
        took = f"{summary['wall_s']:.1f} s"
    return (
        f"{summary['workload']}: {metric} {summary[metric]:.4g} ({rest}) after "
        f"{summary['generations']} generations in {took} -> {out}"
    )


def run(args: argparse.Namespace) -> int:
    """Train the chosen workload; prints the summary line."""
    w = get(args.workload)
    skip = {"command", "workload", "out", "resume", "checkpoint_every", "threads", "quiet", "_run"}
    skip |= {"workers", "ray_address"}
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    out = args.out or os.path.join("runs", w.name)
    from ..training.train import run as train_run
    from ..tuning import retain_heap_memory

    retain_heap_memory()  # a CLI run owns its process: reuse freed arrays' pages
    try:
        summary = train_run(
            w.name,
            out=out,
            resume=args.resume,
            progress=not args.quiet,
            checkpoint_every=args.checkpoint_every,
            threads=args.threads,
            workers=args.workers,
            ray_address=args.ray_address,
            **overrides,
        )
    except ModuleNotFoundError as exc:
        # The workloads' dependencies are the optional `examples` extra.
        raise ValueError(
            f"{w.name} needs the package {exc.name!r}: pip install 'eggroll_np[examples]'"
        ) from None
    print(format_summary(summary, w.metric, out))
    if "verdict" in summary:  # e.g. charlm's result against its baselines, in plain words
        print(f"verdict: {summary['verdict']}")
    if "sample" in summary:  # e.g. charlm's generated text, after the one summary line
        print(f"sample:\n{summary['sample']}")
    return 0
