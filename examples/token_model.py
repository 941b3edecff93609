"""Example: a token model with the population layers: a character-level next-token model
(embedding -> tanh hidden layer -> logits) trained by EGGROLL on a text that ships with Python,
then sampled for every member at once.

`pop.embed(ids, "emb")` gathers the rows of each member's table without forming it (rows of
theta plus rows of A_k times B_k^T); `pop.linear` fuses bias and activation into the pass
that adds each member's low-rank term; `pop.embed(..., per_member=True)` feeds each member its
own sampled tokens. About 4 s on 2 cores.
"""

import pydoc_data.topics

import numpy as np

import eggroll_np as egg
from eggroll_np.training.workloads.common import generation_rng, log_softmax

text = "".join(pydoc_data.topics.topics.values())[:200_000].encode("ascii", "replace")
vocab = np.unique(np.frombuffer(text, np.uint8))
lookup = np.zeros(256, np.int64)
lookup[vocab] = np.arange(vocab.size)
tokens = lookup[np.frombuffer(text, np.uint8)]
V, D, H, CONTEXT = vocab.size, 32, 128, 4

rng = np.random.default_rng(0)


def dense(m, n, scale):
    w = (rng.standard_normal((m, n)) * scale).astype(np.float32)
    return {"W": w, "b": np.zeros(n, np.float32)}


params = {
    "emb": (rng.standard_normal((V, D)) * 0.3).astype(np.float32),
    "hidden": dense(CONTEXT * D, H, 1 / np.sqrt(CONTEXT * D)),
    "out": dense(H, V, 1 / np.sqrt(H)),
}
state = egg.init(params, population=128, sigma=0.05, lr=0.02, seed=0)


def population_logits(pop, ctx, per_member=False):
    """(N, B, V) next-token logits of every member from contexts (B, CONTEXT) or (N, B, CONTEXT)."""
    e = pop.embed(ctx, "emb", per_member=per_member)  # (N, B, CONTEXT, D)
    h = pop.linear(e.reshape(e.shape[0], e.shape[1], -1), "hidden/W", "hidden/b", "tanh")
    return pop.linear(h, "out/W", "out/b")


for gen in range(150):
    pop = egg.ask(params, state)
    starts = generation_rng(0, gen).integers(0, tokens.size - CONTEXT - 1, 128)
    ctx = tokens[starts[:, None] + np.arange(CONTEXT)]  # (B, CONTEXT), shared by all members
    target = tokens[starts + CONTEXT]
    logp = np.take_along_axis(log_softmax(population_logits(pop, ctx)),
                              target[None, :, None], axis=2)[..., 0]
    params, state = egg.tell(params, logp.mean(axis=1), state, population=pop)
    if gen % 25 == 0:
        bits = -state.info["fitness_mean"] / np.log(2)
        print(f"generation {gen}: {bits:.2f} bits per character (population mean)")

# Every member continues its own text: per-member ids through pop.embed(per_member=True).
pop = egg.ask(params, state)
seq = np.broadcast_to(tokens[:CONTEXT], (pop.size, 1, CONTEXT)).copy()  # (N, 1, CONTEXT)
out = []
for _ in range(40):
    logits = population_logits(pop, seq[:, :, -CONTEXT:], per_member=True)[:, 0]  # (N, V)
    nxt = logits.argmax(axis=1)
    out.append(nxt)
    seq = np.concatenate([seq, nxt[:, None, None]], axis=2)
print("member 0 continues:", bytes(vocab[np.array(out)[:, 0]]).decode("ascii", "replace"))
