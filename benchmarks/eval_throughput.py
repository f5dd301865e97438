"""Evaluation throughput: a full 10k-sequence 10->10 evaluation, timed.

    python benchmarks/eval_throughput.py --checkpoint results/model.keras --mnist ../shared/data/mnist
    python benchmarks/eval_throughput.py --checkpoint results/model.keras --data mnist_test_seq.npy

Runs evaluate.py's own `evaluate` (network, the two baselines and all six
metrics per frame, no figures) on --sequences sequences of 20 frames: the
official file (memory-mapped) with --data, else a generated set from the test
digits (8500-8999) -- the same work, 10,000 x 20 frames of 64x64. Prints JSON:
seconds (the evaluation loop), wall_s (including loading the model and data),
sequences_per_s, frames_per_s (forecast frames), peak_rss_mb, the mean model
metrics, and whether the 5-minute target was met.
"""

from __future__ import annotations

import argparse
import json
import time

import common  # noqa: F401  (sets the import path)
from common import PeakRSS

TARGET_S = 300.0


def main(argv=None):
    t_start = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="results/model.keras")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help="the official mnist_test_seq.npy")
    src.add_argument("--mnist", default=None, help="MNIST source for a generated test set")
    p.add_argument("--sequences", type=int, default=10000)
    p.add_argument("--protocols", default="rollout", choices=["both", "next_frame", "rollout"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--context", type=int, default=10)
    p.add_argument("--horizon", type=int, default=10)
    args = p.parse_args(argv)
    import evaluate
    import model

    args.split, args.seed, args.subpixel_offset = "test", 0, 0.0  # evaluate.py's default test set
    net = model.load_predictor(args.checkpoint)
    with PeakRSS() as mem:
        videos, desc = evaluate.test_videos(args)
        results, seconds = evaluate.evaluate(net, videos, args.batch_size, args.context, args.horizon,
                                             args.protocols)
    wall = time.perf_counter() - t_start
    n = desc["sequences"]
    frames = {"both": videos.shape[1] - 1 + args.horizon, "next_frame": videos.shape[1] - 1,
              "rollout": args.horizon}[args.protocols]
    out = {"checkpoint": args.checkpoint, "data": desc, "protocols": args.protocols,
           "batch_size": args.batch_size, "sequences": n, "seconds": round(seconds, 1),
           "wall_s": round(wall, 1), "sequences_per_s": round(n / seconds, 2),
           "frames_per_s": round(n * frames / seconds, 1), "peak_rss_mb": round(mem.peak, 1),
           "model": {proto: {k: round(v, 4) for k, v in r["model"]["mean"].items()}
                     for proto, r in results.items()},
           "target_s": TARGET_S, "target_met": wall < TARGET_S}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
