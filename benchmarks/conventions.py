"""Does a predictor care how digit positions are rasterised? The same test
sequences (same digits, same continuous trajectories) drawn at
floor(position x 36 + offset) for several sub-pixel offsets, each scored by
evaluate.py's protocols beside the copy-last-frame baseline.

    python benchmarks/conventions.py --checkpoint results/model.keras --mnist ../shared/data/mnist \
        --out results/conventions.json

Offset 0 is the reference generator's truncation (Srivastava et al. 2015, the
official file, OpenSTL); 0.5 rounds to the nearest pixel (this repository's
generator before it matched the reference). `spread` is the largest relative
difference of the model's 10->10 MSE per frame between two offsets
((max - min) / min): 0 for a model that does not care.
"""

from __future__ import annotations

import argparse
import os
import time

import common  # noqa: F401  (puts the repository root on sys.path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a predictor; repeat to compare several (each on the same sequences)")
    p.add_argument("--mnist", default=None, help="MNIST source (folder of IDX files or mnist.npz)")
    p.add_argument("--split", default="test", choices=["test", "val"], help="digits (default: %(default)s)")
    p.add_argument("--sequences", type=int, default=1000, help="sequences per offset (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the set, as evaluate.py's (default: %(default)s)")
    p.add_argument("--offsets", default="0,0.25,0.5,0.75", help="sub-pixel offsets (default: %(default)s)")
    p.add_argument("--out", required=True, help="JSON to write")
    args = p.parse_args(argv)

    import data
    import runio
    from evaluate import evaluate
    from model import load_predictor

    offsets = [float(x) for x in args.offsets.split(",")]
    digits = data.load_mnist_digits(args.mnist, args.split)
    sets = {o: data.generate_in_chunks(digits, args.sequences, seed=[args.seed, 3], offset=o) for o in offsets}
    lo, hi = data.TEST_SPLIT_RANGES[args.split]
    report = {"data": {"digits": f"MNIST test split {lo}-{hi - 1}", "split": args.split,
                       "sequences": args.sequences, "seed": args.seed,
                       "note": "the sets evaluate.py generates with --subpixel-offset OFFSET"},
              "models": {}}
    for ckpt in args.checkpoint:
        net = load_predictor(ckpt)
        rows, t0 = {}, time.time()
        for o, videos in sets.items():
            res, _ = evaluate(net, videos)
            rows[str(o)] = {proto: {name: r["mean"] for name, r in res[proto].items()
                                    if name in ("model", "copy_last_frame")} for proto in res}
            m = rows[str(o)]
            print(f"{ckpt} offset {o:g}: 10->10 MSE/frame {m['rollout_10_10']['model']['mse_frame']:.1f} "
                  f"SSIM {m['rollout_10_10']['model']['ssim']:.3f}; next frame PSNR "
                  f"{m['next_frame']['model']['psnr']:.2f} SSIM {m['next_frame']['model']['ssim']:.3f}", flush=True)
        mse = [r["rollout_10_10"]["model"]["mse_frame"] for r in rows.values()]
        report["models"][ckpt] = {"by_offset": rows, "spread": (max(mse) - min(mse)) / min(mse),
                                  "seconds": round(time.time() - t0, 1)}
        print(f"{ckpt}: spread of the 10->10 MSE over offsets {report['models'][ckpt]['spread']:.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    runio.write_json(report, args.out)


if __name__ == "__main__":
    main()
