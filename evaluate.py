"""Evaluate a trained predictor on held-out data.

    python evaluate.py --checkpoint results/model.keras --mnist ../shared/data/mnist
    python evaluate.py --checkpoint results/model.keras --data mnist_test_seq.npy

Protocols (every number beside the copy-last-frame and all-black baselines on
the same sequences):
- next_frame: frames 0..T-2 in, output t scored against frame t+1.
- rollout_10_10: 10 true frames in, the next 10 forecast autoregressively (each
  forecast fed back as input).
Writes metrics.json, comparison.png/.gif, rollout.png/.gif and per-frame
metric plots to --out (default: runs/eval/NAME, NAME the checkpoint's folder;
results already there are replaced, as one set, only with --overwrite).
"""

from __future__ import annotations

import functools
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import numpy as np  # noqa: E402

import runio  # noqa: E402
from cli import CliParser, InputError, UserError, entry, progress, seed_arg  # noqa: E402
from views import VIEWS, over_views  # noqa: E402

# metrics and model import Keras (seconds): they load in the functions that use them,
# after the flags are checked, so a typo is refused at once.


def parse_args(argv=None):
    p = CliParser(__doc__, "python evaluate.py")
    p.add_argument("--checkpoint", default="results/model.keras", help="the predictor (default: %(default)s)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help="the official mnist_test_seq.npy (uint8, (20, N, 64, 64))")
    src.add_argument("--mnist", default=None,
                     help="MNIST source: generate a seeded test set from test digits 8500-8999")
    p.add_argument("--sequences", type=int, default=None,
                   help="test sequences: the generated set's size (default 1000), or the first N of --data "
                        "(default: all of it, as papers score the official file; 0 = all)")
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="digits for the generated set: test (8500-8999, the reported numbers) or val "
                        "(8000-8499, for choosing between models) (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the generated test set (default: %(default)s)")
    p.add_argument("--subpixel-offset", type=float, default=0.0,
                   help="generated set: digits at floor(position x 36 + OFFSET); 0 = the reference "
                        "generator's truncation, 0.5 = rounding to the nearest pixel (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per batch (default: %(default)s)")
    p.add_argument("--context", type=int, default=10, help="true frames before the rollout (default: %(default)s)")
    p.add_argument("--horizon", type=int, default=10, help="frames forecast in the rollout (default: %(default)s)")
    p.add_argument("--protocols", default="both", choices=["both", "next_frame", "rollout"],
                   help="both (the default) share one stepwise pass: the rollout branches off after the context")
    p.add_argument("--views", default="none", choices=sorted(VIEWS),
                   help="test-time averaging: the mean of the model's forecasts of the frames seen transposed "
                        "(transpose, 2 passes), flipped (flips, 4) or both (dihedral, 8); papers score one pass, "
                        "as none does (default: %(default)s)")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/eval/NAME, NAME the checkpoint's folder)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    return p.parse_args(argv)


# Everything evaluate.py writes into --out: replaced together, so a folder never
# mixes two evaluations (e.g. one with a rollout and a later one without).
OUTPUTS = ("metrics.json", "comparison.png", "comparison.gif", "next_frame_metrics.png", "rollout.png",
           "rollout.gif", "rollout_examples.png", "rollout_metrics.png")


def default_out(checkpoint: str) -> str:
    """runs/eval/NAME, NAME the checkpoint's folder: never the folder of a shipped model."""
    return os.path.join("runs", "eval", os.path.basename(os.path.dirname(os.path.abspath(checkpoint))))


def test_videos(args, seq_len: int = 20, num_digits: int = 2):
    """uint8 (N, T, 64, 64) test sequences and a description of them."""
    import data

    if args.data:
        view = data.open_moving_mnist_npy(args.data)
        n = len(view) if args.sequences in (0, None) else min(args.sequences, len(view))
        return view[:n], {"source": "official mnist_test_seq.npy", "path": args.data, "sequences": n}
    digits = data.load_mnist_digits(args.mnist, args.split)
    n = 1000 if args.sequences is None else args.sequences
    vids = data.generate_in_chunks(digits, n, seq_len, num_digits, seed=[args.seed, 3],
                                   offset=args.subpixel_offset)
    lo, hi = data.TEST_SPLIT_RANGES[args.split]
    return vids, {"source": "generated Moving MNIST (the reference generator)",
                  "digits": f"MNIST test split {lo}-{hi - 1}", "split": args.split,
                  "sequences": n, "seq_len": seq_len, "num_digits": num_digits,
                  "seed": args.seed, "subpixel_offset": args.subpixel_offset}


@functools.cache
def _metric_graph():
    import tensorflow as tf

    import metrics

    return tf.function(metrics.frame_metrics_tensor, reduce_retracing=True)


def batch_metrics(truth, pred) -> dict:
    """`metrics.frame_metrics` of (B, T, H, W, C) frames as {name: (B, T)}, computed
    by `metrics.frame_metrics_tensor` in one compiled graph (float32; equal to the
    NumPy reference within 2e-5, tests/test_metrics.py)."""
    vals = _metric_graph()(np.asarray(truth, np.float32), np.asarray(pred, np.float32))
    return {k: np.asarray(v, np.float64).reshape(truth.shape[:2]) for k, v in vals.items()}


class Accumulator:
    """Sums per-position metric values over batches."""

    def __init__(self):
        import metrics

        self.sums, self.names = {}, tuple(metrics.METRICS)

    def add(self, name, truth, pred):
        vals = batch_metrics(truth, pred)  # each (B, T)
        acc = self.sums.setdefault(name, {k: 0.0 for k in self.names})
        for k in self.names:
            acc[k] = acc[k] + vals[k].sum(axis=0)

    def result(self, n):
        return {name: {k: (v / n).tolist() for k, v in acc.items()} for name, acc in self.sums.items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def summarise(per_pos: dict) -> dict:
    return {name: {"mean": {k: float(np.mean(v)) for k, v in m.items()}, "per_frame": m}
            for name, m in per_pos.items()}


def evaluate(net, videos, batch_size=32, context=10, horizon=10, protocols="both", views="none"):
    """Next-frame and/or rollout metrics for `net` and the baselines on uint8 videos.

    With both protocols the network makes one stepwise pass per batch
    (`model.forecast`): the rollout branches off after the context frames.
    `views` averages the model's forecasts over `views.VIEWS[views]` (one pass each)."""
    import data
    from model import forecast, predict_frames, rollout

    t = videos.shape[1]
    if t < 2:
        raise UserError("test sequences need at least 2 frames")
    can_rollout = context + horizon <= t and context >= 1 and horizon >= 1
    do_next = protocols in ("both", "next_frame")
    do_rollout = protocols in ("both", "rollout")
    if do_rollout and not can_rollout:  # never dropped silently: the user asked for it
        raise UserError(f"--context {context} + --horizon {horizon} needs sequences of at least "
                        f"{context + horizon} frames (these have {t})")
    nf, ro = Accumulator(), Accumulator()
    n = len(videos)
    bar = progress(n, "sequences")
    t0 = time.time()
    for i in range(0, n, batch_size):
        v = data.to_float(videos[i:i + batch_size])
        if do_next and do_rollout:
            p, r = over_views(lambda f: forecast(net, f, context, horizon), v, views)
        elif do_next:
            p = over_views(lambda f: predict_frames(net, f), v[:, :-1], views)
        else:
            r = over_views(lambda f: rollout(net, f, horizon), v[:, :context], views)
        if do_next:
            x, y = v[:, :-1], v[:, 1:]
            nf.add("model", y, p)
            nf.add("copy_last_frame", y, x)
            nf.add("all_black", y, np.zeros_like(y))
        if do_rollout:
            ctx, fut = v[:, :context], v[:, context:context + horizon]
            ro.add("model", fut, r)
            ro.add("copy_last_frame", fut, np.repeat(ctx[:, -1:], horizon, axis=1))
            ro.add("all_black", fut, np.zeros_like(fut))
        if bar is not None:
            bar.update(min(i + batch_size, n))
    seconds = time.time() - t0
    out = {}
    if do_next:
        out["next_frame"] = summarise(nf.result(n))
    if do_rollout:
        out[f"rollout_{context}_{horizon}"] = summarise(ro.result(n))
    return out, seconds


def write_figures(net, videos, results, out, context, horizon, where="test set", views="none"):
    import data
    import metrics
    import plots
    from model import predict_frames, rollout

    curve_names = tuple(k for k, m in metrics.METRICS.items() if m.curve)  # drawn per forecast step

    v = data.to_float(videos[:1])
    x, y = v[:, :-1], v[:, 1:]
    p = over_views(lambda f: predict_frames(net, f), x, views)
    plots.comparison_strip([y[0], p[0]], ["truth", "forecast"], os.path.join(out, "comparison.png"),
                           "Next-frame prediction (each forecast from the true frames before it)",
                           first_index=1)
    plots.write_gif(plots.side_by_side([y[0], p[0]]), os.path.join(out, "comparison.gif"))
    if "next_frame" in results:
        nf = results["next_frame"]
        frames = np.arange(2, videos.shape[1] + 1) - 1
        curves = {k: {name: nf[name]["per_frame"][k] for name in nf} for k in curve_names}
        plots.per_step_curves(frames, curves, os.path.join(out, "next_frame_metrics.png"),
                              f"next-frame metrics per frame index ({where})")
    key = f"rollout_{context}_{horizon}"
    if key in results:
        many = data.to_float(videos[:12])
        ctx, fut = many[:, :context], many[:, context:context + horizon]
        r = over_views(lambda f: rollout(net, f, horizon), ctx, views)
        mid = (horizon - 1) // 2
        plots.comparison_strip([fut[:, mid], r[:, mid], fut[:, -1], r[:, -1]],
                               [f"truth +{mid + 1}", f"forecast +{mid + 1}", f"truth +{horizon}",
                                f"forecast +{horizon}"], os.path.join(out, "rollout_examples.png"),
                               f"{len(many)} sequences ({where}): forecast steps {mid + 1} and {horizon} "
                               f"of the {context}->{horizon} rollout",
                               col_titles=[f"seq {i}" for i in range(len(many))])
        plots.comparison_strip([fut[0], r[0]], ["truth", f"rollout ({context} in)"],
                               os.path.join(out, "rollout.png"),
                               f"{context} true frames in, {horizon} forecast autoregressively",
                               first_index=context)
        truth = np.concatenate([ctx[0], fut[0]])
        pred = np.concatenate([ctx[0], r[0]])
        plots.write_gif(plots.side_by_side([truth, pred]), os.path.join(out, "rollout.gif"))
        ro = results[key]
        curves = {k: {name: ro[name]["per_frame"][k] for name in ro} for k in curve_names}
        plots.per_step_curves(np.arange(1, horizon + 1), curves, os.path.join(out, "rollout_metrics.png"),
                              f"{context}->{horizon} rollout metrics per forecast step ({where})")


def run(args) -> None:
    from config import Config

    if args.sequences is not None and args.sequences < 0:
        raise InputError(f"--sequences must be >= 0, got {args.sequences}")
    for flag, value in (("--batch-size", args.batch_size), ("--context", args.context), ("--horizon", args.horizon)):
        if value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    if not args.data and args.sequences == 0:
        raise InputError("--sequences 0 (all) needs --data")
    if not 0.0 <= args.subpixel_offset < 1.0:
        raise InputError(f"--subpixel-offset must be in [0, 1), got {args.subpixel_offset}")
    if args.data and args.subpixel_offset:
        raise InputError(f"--subpixel-offset {args.subpixel_offset} applies to a generated set, not to --data")
    out = args.out or default_out(args.checkpoint)
    runio.check_replace(out, "metrics.json", args.overwrite)
    import metrics
    from model import load_predictor

    net = load_predictor(args.checkpoint)
    run_dir = os.path.dirname(os.path.abspath(args.checkpoint))
    cfg_path = os.path.join(run_dir, "config.json")
    cfg = Config.load(cfg_path) if os.path.exists(cfg_path) else None
    videos, desc = test_videos(args, seq_len=20, num_digits=cfg.train.num_digits if cfg else 2)
    results, seconds = evaluate(net, videos, args.batch_size, args.context, args.horizon, args.protocols,
                                args.views)
    report = {"checkpoint": args.checkpoint, "views": args.views,
              "config": cfg.to_dict() if cfg else None,
              "data": desc, "data_range": 1.0,
              "metrics": {k: m.description for k, m in metrics.METRICS.items()},
              "seconds": round(seconds, 1), "peak_rss_mb": peak_rss_mb(), **results}
    with runio.output_set(out, OUTPUTS) as stage:
        write_figures(net, videos, results, stage, args.context, args.horizon, desc.get("digits", desc["source"]),
                      args.views)
        runio.write_json(report, os.path.join(stage, "metrics.json"))
    for proto in results:
        print(f"{proto}:")
        for name, r in results[proto].items():
            m = r["mean"]
            print(f"  {name:16s} PSNR {m['psnr']:6.2f}  SSIM {m['ssim']:.4f}  "
                  f"MSE/frame {m['mse_frame']:7.2f}  MAE/frame {m['mae_frame']:7.2f}")
    print(f"wrote {os.path.join(out, 'metrics.json')} ({desc['sequences']} sequences, {seconds:.0f} s)")


main = entry(parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
