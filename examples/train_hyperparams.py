"""Example: black-box ES over an SVC's log C and log gamma (`eggroll-np train hyperparams`).

Fitness is 3-fold cross-validated accuracy on part of scikit-learn's digits; the summary adds the
test accuracy of an SVC fitted with the values found.
"""

import sys

from eggroll_np.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "hyperparams", *sys.argv[1:]]))
