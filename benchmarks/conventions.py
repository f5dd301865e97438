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

import common  # (also puts the repository root on sys.path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a predictor; repeat to compare several (each on the same sequences)")
    common.add_generated_set_flags(p, "test", "sequences per offset")
    p.add_argument("--offsets", default="0,0.25,0.5,0.75", help="sub-pixel offsets (default: %(default)s)")
    p.add_argument("--out", required=True, help="JSON to write")
    args = p.parse_args(argv)

    import runio
    from evaluate import evaluate
    from model import load_predictor

    sets, desc = common.generated_set(args, [float(x) for x in args.offsets.split(",")])
    report = {"data": {**desc, "note": "the sets evaluate.py generates with --subpixel-offset OFFSET"},
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
