"""Example: the Simple CNN on digits with an SGD-backprop baseline beside it
(`eggroll-np train cnn`).

Run `python examples/train_cnn.py [--generations 200] [--data MNIST_DIR] ...`; every option of
`eggroll-np train cnn --help` works. Writes runs/cnn/{metrics.jsonl,learning_curve.png,...}.
"""

import sys

from eggroll_np.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "cnn", *sys.argv[1:]]))
