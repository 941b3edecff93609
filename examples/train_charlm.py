"""Example: a byte-level minGRU language model on Python's own documentation text
(`eggroll-np train charlm`); held-out bits per byte beside unigram and bigram count models.

Run `python examples/train_charlm.py [--data FILE.txt] [--generations 300] ...`; every option of
`eggroll-np train charlm --help` works. Writes runs/charlm/{metrics.jsonl,learning_curve.png,...}
and prints a generated sample.
"""

import sys

from eggroll_np.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "charlm", *sys.argv[1:]]))
