"""Example: CartPole-v1, an MLP policy, all members' episodes at once (`eggroll-np train cartpole`).

The final summary is the mean return over 20 episodes of gymnasium's CartPole-v1 with seeds the
training never used.
"""

import sys

from eggroll_np.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "cartpole", *sys.argv[1:]]))
