"""Example: the digits MLP on MNIST from your own files (`eggroll-np train mnist --data DIR`).

Nothing is downloaded: pass --data, a directory with the four IDX files (optionally .gz) or an
.npz with x_train, y_train, x_test, y_test.
"""

import sys

from eggroll_np.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "mnist", *sys.argv[1:]]))
