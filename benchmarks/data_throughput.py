"""Data throughput: the Moving MNIST generator on one core and the tf.data
training pipeline, against what the model consumes.

    python benchmarks/data_throughput.py --mnist ../shared/data/mnist

Prints JSON: generator_sequences_per_s (one thread, 20 x 64 x 64, 2 digits),
pipeline_sequences_per_s (tf.data: generate, convert to float, shift, prefetch),
and, with --consumer-seq-per-s (e.g. from train_throughput.py), the headroom.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import common  # noqa: F401,E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", default=None)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--consumer-seq-per-s", type=float, default=None)
    args = p.parse_args(argv)
    import data

    digits = data.load_mnist_digits(args.mnist, "train")
    data.generate_moving_mnist(digits, 64, seed=0)
    n, t0, seed = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        data.generate_moving_mnist(digits, 256, seed=seed)
        n, seed = n + 256, seed + 1
    gen = n / (time.perf_counter() - t0)
    ds = data.train_dataset(digits, args.batch_size, 20, 2, seed=0)
    it = iter(ds)
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        next(it)
        n += args.batch_size
    pipe = n / (time.perf_counter() - t0)
    out = {"generator_sequences_per_s": gen, "pipeline_sequences_per_s": pipe,
           "sequence_shape": [20, 64, 64], "num_digits": 2}
    if args.consumer_seq_per_s:
        out["consumer_sequences_per_s"] = args.consumer_seq_per_s
        out["pipeline_headroom_x"] = pipe / args.consumer_seq_per_s
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
