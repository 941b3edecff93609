"""Example: `eggroll-np train charlm` with its defaults on several texts of different kinds, each
with its own held-out tail, beside the unigram and bigram count models (issue 26).

The texts are found on the machine and in Python's own distribution: Python's pydoc_data topics
(charlm's default text), the Vim user manual and its reference manual, the source of Python's
`email` and `asyncio` packages, and the license texts of /usr/share/common-licenses plus Python's
LICENSE. A text that
is not on this machine is left out with a note. The recipe was tuned on the texts marked "tuned";
the others it never saw before its figures were measured.

Run `python examples/charlm_texts.py --out runs/charlm_texts` (one default charlm run per text,
each a few minutes on 2 cores; a text whose run already finished with the same options is not run
again, its runs/charlm_texts/NAME/summary.json is read back). Prints a Markdown table: held-out
bits per byte, both baselines, the verdict, the run's wall time and its process CPU time
(user + sys, which bounds the wall time on 2 quiet cores). `--generations N` and `--texts A,B`
run a shorter or smaller evaluation.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass

MIN_BYTES, MAX_BYTES = 100_000, 10_000_000  # the range of text sizes


@dataclass(frozen=True)
class Text:
    name: str
    kind: str
    tuned: bool
    files: Callable[[], list[str]]  # the files joined into the text; [] for charlm's default


def _stdlib(*pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], *pattern)))


def _licenses() -> list[str]:
    # GPL, LGPL, GFDL are links to versioned files: each text once.
    found = {os.path.realpath(p) for p in glob.glob("/usr/share/common-licenses/*")}
    return sorted(p for p in found if os.path.isfile(p)) + _stdlib("LICENSE.txt")


TEXTS = (
    Text("pydoc", "prose documentation (charlm's default)", True, lambda: []),
    Text("vim-manual", "prose documentation (user manual)", True, lambda: sorted(
        glob.glob("/usr/share/vim/vim*/doc/usr_*.txt"))),
    Text("vim-reference", "prose documentation (reference manual)", False, lambda: sorted(
        p for p in glob.glob("/usr/share/vim/vim*/doc/*.txt")
        if not os.path.basename(p).startswith("usr_"))),
    Text("email-src", "Python source", True, lambda: _stdlib("email", "*.py")),
    Text("asyncio-src", "Python source", False, lambda: _stdlib("asyncio", "*.py")),
    Text("licenses", "legal prose", False, _licenses),
)  # fmt: skip


def build(text: Text, out: str) -> tuple[str | None, int] | None:
    """(the --data path or None for the default text, its size in bytes); None if not found."""
    files = text.files()
    if text.name == "pydoc":
        from eggroll_np.training.workloads import corpus

        return None, len(corpus.load_text(None)[0])
    if not files:
        return None
    data = b""
    for path in files:  # whole files, in sorted order, until the text is big enough
        with open(path, "rb") as fh:
            data += fh.read() + b"\n"
        if len(data) >= MAX_BYTES:
            data = data[: data.rfind(b"\n", 0, MAX_BYTES) + 1]
            break
    if len(data) < MIN_BYTES:
        print(f"{text.name}: only {len(data)} bytes found, left out", file=sys.stderr)
        return None
    path = os.path.join(out, "texts", f"{text.name}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "wb") as fh:
        fh.write(data)
    os.replace(path + ".part", path)
    return path, len(data)


def run(text: Text, data: str | None, out: str, extra: list[str]) -> dict:
    """The run's summary, with its CPU time: read back if it already ran with these options."""
    run_dir = os.path.join(out, text.name)
    done = os.path.join(run_dir, "summary.json")
    options = ["--data", data] if data else []
    options += ["--sample-bytes", "0", *extra]
    if os.path.exists(done) and os.path.exists(os.path.join(run_dir, "timing.json")):
        with open(os.path.join(run_dir, "timing.json"), encoding="utf-8") as fh:
            timing = json.load(fh)
        if timing["options"] == options:
            with open(done, encoding="utf-8") as fh:
                return {**json.load(fh), **timing}
    cmd = [sys.executable, "-m", "eggroll_np", "train", "charlm", *options, "--quiet"]
    print(f"{text.name}: {' '.join(cmd[1:])} --out {run_dir}", file=sys.stderr, flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*cmd, "--out", run_dir], check=True, stdout=sys.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    timing = {"options": options, "cpu_s": round(cpu, 1)}
    with open(os.path.join(run_dir, "timing.json"), "w", encoding="utf-8") as fh:
        json.dump(timing, fh, indent=2)
    with open(done, encoding="utf-8") as fh:
        return {**json.load(fh), **timing}


def table(rows: list[tuple[Text, int, dict]]) -> str:
    lines = [
        "| text | kind | size | tuned on | unigram | bigram | held-out bits per byte | verdict "
        "| wall time | CPU time (user+sys) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for text, size, s in rows:
        below = "NOT below" if "NOT below" in s["verdict"] else "below"
        lines.append(
            f"| {text.name} | {text.kind} | {size / 1000:.0f} KB | {'yes' if text.tuned else 'no'} "
            f"| {s['unigram_bits_per_byte']:.3f} | {s['bigram_bits_per_byte']:.3f} "
            f"| **{s['val_bits_per_byte']:.3f}** | {below} the bigram baseline "
            f"| {s['wall_s']:.0f} s | {s['cpu_s']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join("runs", "charlm_texts"), metavar="DIR")
    p.add_argument("--texts", help="comma-separated names (default: all): "
                   + ", ".join(t.name for t in TEXTS))  # fmt: skip
    p.add_argument("--generations", type=int, help="(default: charlm's default)")
    args = p.parse_args(argv)
    chosen = args.texts.split(",") if args.texts else [t.name for t in TEXTS]
    unknown = sorted(set(chosen) - {t.name for t in TEXTS})
    if unknown:
        p.error(f"--texts: no text(s) {', '.join(unknown)}")
    extra = [] if args.generations is None else ["--generations", str(args.generations)]
    rows = []
    for text in TEXTS:
        if text.name not in chosen:
            continue
        found = build(text, args.out)
        if found is None:
            print(f"{text.name}: not found on this machine, left out", file=sys.stderr)
            continue
        data, size = found
        rows.append((text, size, run(text, data, args.out, extra)))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
