"""Frame-level evaluation on labelled videos, against a simple baseline.

    python -m anomaly.evaluate --model runs/anomaly --videos "data/crowd/test/*.mp4"

Every video needs per-frame labels, one 0/1 per line, in LABELS/NAME.labels.txt
(--labels, default: beside the video), e.g. UMN or UCSD ground truth converted
to that form. Scores are pooled over all videos as they are (no per-video
normalisation); frames before the first full window are excluded, for the model
and the baselines alike. Two baselines, both with the detector's temporal
smoothing (--smooth): the mean optical-flow magnitude of the frame, and the
flow magnitude reduced exactly as the model's error is (--score, --border: e.g.
the fastest 8x8-pixel cell of the interior), so that a local score is compared
with a local baseline.
Writes OUT/metrics.json, OUT/roc.png and one score plot per video.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from config import CliParser, UserError, run_cli  # noqa: E402


def parse_args(argv=None):
    p = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, action="append", help="detector folder (repeat: ensemble)")
    p.add_argument("--videos", required=True)
    p.add_argument("--labels", default=None, help="folder of NAME.labels.txt (default: beside each video)")
    p.add_argument("--out", default=os.path.join("results", "anomaly"))
    p.add_argument("--stride", type=int, default=None, help="score a window every N frames (default: the model's)")
    p.add_argument("--smooth", type=int, default=None,
                   help="max over the last N frames' scores (default: the model's; 1 = off)")
    p.add_argument("--score", default=None, choices=["mean", "local"], help="frame reduction (default: the model's)")
    p.add_argument("--border", type=int, default=None,
                   help="pixels left out at each edge when scoring (default: the model's)")
    return p.parse_args(argv)


def flow_speed(raw: np.ndarray) -> np.ndarray:
    """Optical-flow magnitude per pixel of raw features (T, S, S, 3) -> (T, S, S): what
    both baselines reduce."""
    return np.hypot(raw[..., 0], raw[..., 1])


def main(argv=None) -> int:
    args = parse_args(argv)
    def run():
        import plots
        from anomaly import scoring
        from anomaly.detect import apply_overrides, plot_scores
        from anomaly.detector import Detector, causal_max, reduce_error_map
        from anomaly.synthetic import read_labels
        from anomaly.video import expand_videos, read_video

        det = apply_overrides(Detector.load(args.model), args)
        paths = expand_videos(args.videos)
        os.makedirs(args.out, exist_ok=True)
        all_s, all_b, all_l, all_y, per_video = [], [], [], [], {}
        for p in paths:
            stem = os.path.splitext(os.path.basename(p))[0]
            lp = os.path.join(args.labels or os.path.dirname(p), stem + ".labels.txt")
            if not os.path.isfile(lp):
                raise UserError(f"{p}: no labels file {lp} (one 0/1 per frame)")
            labels = read_labels(lp)
            raw = det.features(read_video(p))
            if len(labels) != len(raw):
                raise UserError(f"{lp}: {len(labels)} labels for {len(raw)} frames")
            s = det.score_features(raw)
            speed = flow_speed(raw)  # both baselines get the model's temporal smoothing
            b = causal_max(reduce_error_map(speed, "mean"), det.smooth)
            loc = causal_max(reduce_error_map(speed, det.score, det.border), det.smooth)
            keep = np.isfinite(s)
            all_s.append(s[keep])
            all_b.append(b[keep])
            all_l.append(loc[keep])
            all_y.append(labels[keep])
            per_video[stem] = {"frames": len(raw), "anomalous": int(labels.sum()),
                               "flagged": int(np.sum(s[keep] > det.threshold))}
            plot_scores(os.path.join(args.out, f"scores_{stem}.png"), s, det.threshold, labels, stem)
        s, b, y = np.concatenate(all_s), np.concatenate(all_b), np.concatenate(all_y)
        loc = np.concatenate(all_l)
        res = {"videos": paths, "threshold": det.threshold, "stride": det.stride, "score": det.score,
               "smooth": det.smooth, "border": det.border, "model": scoring.report(s, y),
               "baseline_mean_flow_magnitude": scoring.report(b, y),
               "baseline_flow_magnitude_as_model": scoring.report(loc, y),
               "at_threshold": {"tpr": float(np.mean(s[y == 1] > det.threshold)),
                                "fpr": float(np.mean(s[y == 0] > det.threshold))},
               "per_video": per_video, "models": args.model}
        plt = plots._plt()
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        for name, sc in (("ConvLSTM AE", s), ("mean flow magnitude", b),
                         (f"flow magnitude ({det.score}, border {det.border})", loc)):
            fpr, tpr, _ = scoring.roc_curve(sc, y)
            ax.plot(fpr, tpr, label=f"{name} (AUC {scoring.roc_auc(sc, y):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="Frame-level ROC (pooled)")
        ax.legend(fontsize=8)
        plots._save(fig, os.path.join(args.out, "roc.png"))
        plots.write_json(res, os.path.join(args.out, "metrics.json"))
        for label, key in (("model", "model"), ("baseline, mean flow", "baseline_mean_flow_magnitude"),
                           ("baseline, flow as model", "baseline_flow_magnitude_as_model")):
            m = res[key]
            print(f"{label + ':':25s} ROC-AUC {m['roc_auc']:.3f}  PR-AUC {m['pr_auc']:.3f}  EER {m['eer']:.3f}")
    return run_cli(run, ValueError, OSError)


if __name__ == "__main__":
    sys.exit(main())
