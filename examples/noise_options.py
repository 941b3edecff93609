"""Measures what a generation's noise costs in the `rl` forward, and what the options of issue 12
would save: a faster generator (the same contract on more threads) and an opt-in shared noise
table (normals made once from the seed, each member's values read at a counter-derived offset).

Prints medians of `--repeats` calls on one and on all threads, against pure inference of `rl`:
    python examples/noise_options.py [--repeats 9]
The table is the library's opt-in `init(noise_table=T)` (eggroll_np/noise_table.py): its read is
timed here for the same requests, at the real counter-derived offsets (`eggroll-np bench
--noise-table T` times whole forwards and generations with it).
"""

import argparse
import dataclasses
import statistics
import time

import numpy as np

import eggroll_np as egg
from eggroll_np import noise, noise_table
from eggroll_np.benchmarks.reference import (
    WORKLOADS,
    inference,
    inference_rows,
    make_fitness,
    make_inputs,
    make_params,
)


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    w = WORKLOADS["rl"]
    params = make_params(w)
    x = make_inputs(w)
    rows = inference_rows(w, x)
    fitness = make_fitness(w, x)
    state = egg.init(params, population=w.population, sigma=0.02, lr=0.01, rank=1, seed=0)
    made = []  # populations whose noise is already made: the forward without the generator

    def forward_noise_made():
        fitness(made.pop())

    keys = noise.member_keys(w.population)[::2]  # antithetic: 512 unique keys
    requests = []
    for j, (m, n) in enumerate(zip(w.sizes[:-1], w.sizes[1:], strict=True)):
        requests += noise.factor_requests(2 * j, (m, n), 1) + [(2 * j + 1, 0, n)]
    values = keys.size * sum(c for _, _, c in requests)
    size = 1 << 24
    table = noise_table.table(0, size)  # 64 MiB, made once per run
    extents = [0] * (2 * len(w.sizes))
    for leaf, off, c in requests:
        extents[leaf] = max(extents[leaf], off + c)
    epoch = iter(range(1, 1 << 30))  # every read a new epoch: fresh offsets, as in a run

    def read_table():
        noise_table.read_many(0, size, next(epoch), keys, requests, extents)

    flat = np.empty(values, np.float32)
    print(f"rl: {values / 1e6:.2f} M normals per generation ({keys.size} keys)")
    for threads in (1, egg.threads().core or 1):
        with egg.threads(threads):  # BLAS and the core, restored after each round
            t_inf = median_ms(lambda: inference(params, rows), args.repeats)
            t_gen = median_ms(lambda: noise.normals_many(0, 1, keys, requests), args.repeats)
            t_tab = median_ms(read_table, args.repeats)
            t_copy = median_ms(lambda: np.copyto(flat, table[:values]), args.repeats)
            ratios = []  # inference and forward in alternation: the load drifts between rounds
            for g in range(args.repeats):
                pop = egg.ask(params, dataclasses.replace(state, generation=g))
                pop.noise.prefetch(full=True)
                made.append(pop)
                t0 = time.perf_counter()
                inference(params, rows)
                t1 = time.perf_counter()
                forward_noise_made()
                ratios.append((t1 - t0) / (time.perf_counter() - t1))
            r_fwd = statistics.median(ratios)
        print(
            f"{threads} thread(s): inference {t_inf:.1f} ms; generator {t_gen:.1f} ms "
            f"({values / t_gen / 1e3:.0f} M/s, {t_gen / t_inf:.0%} of inference); table read "
            f"{t_tab:.1f} ms ({t_tab / t_inf:.0%}); its lower bound, one contiguous copy "
            f"{t_copy:.1f} ms ({t_copy / t_inf:.0%}); forward with its noise already made: "
            f"{r_fwd:.2f} of inference's throughput"
        )


if __name__ == "__main__":
    main()
