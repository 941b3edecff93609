"""Example: recover a random network's parameters from its outputs (`eggroll-np train matching`).

The relative parameter error is logged each generation (metrics.jsonl, second panel of the PNG).
"""

import sys

from eggroll_np.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "matching", *sys.argv[1:]]))
