"""Example: an MLP on digits with an MLPClassifier baseline beside it (`eggroll-np train digits`).

Run `python examples/train_digits.py [--fitness accuracy] [--generations 300] ...`; every option of
`eggroll-np train digits --help` works. Writes runs/digits/{metrics.jsonl,learning_curve.png,...}.
"""

import sys

from eggroll_np.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "digits", *sys.argv[1:]]))
