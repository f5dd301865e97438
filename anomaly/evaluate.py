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
With --normal-videos (the clips the model was trained on), a third baseline:
the per-location normal-motion model of `anomaly.location`, fitted on them,
reduced as the model is and (a second entry) the other way, worst cell or mean.
Every metric is reported pooled and per anomaly kind (each kind's clips with the
normal clips; "speed" and "pattern" groups), the kind read from the clip name
(NAME_NN.mp4, as `anomaly.synthetic` writes them).
Writes OUT/metrics.json, OUT/roc.png and one score plot per video.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from cli import CliParser, UserError, output_dir, run_cli  # noqa: E402
import runio  # noqa: E402


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
    p.add_argument("--normal-videos", default=None,
                   help="normal clips (the model's training clips) to fit the per-location baseline on; "
                        "without it that baseline is left out")
    return p.parse_args(argv)


def flow_speed(raw: np.ndarray) -> np.ndarray:
    """Optical-flow magnitude per pixel of raw features (T, S, S, C) -> (T, S, S): what
    both baselines reduce."""
    return np.hypot(raw[..., 0], raw[..., 1])


def clip_kind(stem: str) -> str:
    """The anomaly kind of a benchmark clip from its name: "wrong_way_03" -> "wrong_way"."""
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def kind_groups(kinds: list) -> dict:
    """{group: clip kinds it pools}: "all"; each anomaly kind with the normal clips;
    "pattern" and "speed" anomalies with the normal clips (where present)."""
    from anomaly.scoring import PATTERN_KINDS, SPEED_KINDS

    present = sorted(set(kinds))
    groups = {"all": present}
    for name, members in (("speed", SPEED_KINDS), ("pattern", PATTERN_KINDS)):
        if len([k for k in present if k in members]) > 1:
            groups[name] = ["normal", *[k for k in present if k in members]]
    for k in present:
        if k != "normal":
            groups[k] = ["normal", k]
    return groups


def main(argv=None) -> int:
    args = parse_args(argv)

    def run():
        import plots
        from anomaly import scoring
        from anomaly.detector import Detector, apply_overrides, causal_max, reduce_error_map
        from anomaly.location import LocationModel
        from anomaly.video import expand_videos, read_labels, read_video

        det = apply_overrides(Detector.load(args.model), args)
        paths = expand_videos(args.videos)
        location = None
        if args.normal_videos:  # the per-location baseline, fitted on the normal clips given
            location = LocationModel(border=det.border).fit(
                [det.features(read_video(p)) for p in expand_videos(args.normal_videos)])
        output_dir(args.out)
        methods = {"model": "motion model" if det.objective == "motion" else "ConvLSTM AE", "baseline_mean_flow_magnitude": "mean flow magnitude",
                   "baseline_flow_magnitude_as_model": f"flow magnitude ({det.score}, border {det.border})"}
        other = "mean" if det.score == "local" else "local"
        if location is not None:  # under both reductions: the model's, and the other (it may suit the baseline)
            methods["baseline_per_location"] = f"per-location motion model ({det.score})"
            methods[f"baseline_per_location_{other}"] = f"per-location motion model ({other})"
        clips, per_video = [], {}
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
            speed = flow_speed(raw)  # every baseline gets the model's temporal smoothing
            scores = {"model": s,
                      "baseline_mean_flow_magnitude": causal_max(reduce_error_map(speed, "mean"), det.smooth),
                      "baseline_flow_magnitude_as_model":
                          causal_max(reduce_error_map(speed, det.score, det.border), det.smooth)}
            if location is not None:
                scores["baseline_per_location"] = causal_max(location.frame_scores(raw, det.score), det.smooth)
                scores[f"baseline_per_location_{other}"] = causal_max(location.frame_scores(raw, other), det.smooth)
            keep = np.isfinite(s)  # frames before the first full window: left out for all
            clips.append((clip_kind(stem), {k: v[keep] for k, v in scores.items()}, labels[keep]))
            per_video[stem] = {"frames": len(raw), "anomalous": int(labels.sum()),
                               "flagged": int(np.sum(s[keep] > det.threshold))}
            plots.anomaly_scores(os.path.join(args.out, f"scores_{stem}.png"), s, det.threshold, labels, stem)
        per_kind = {}
        for group, kinds in kind_groups([c[0] for c in clips]).items():
            sel = [c for c in clips if c[0] in kinds]
            y = np.concatenate([c[2] for c in sel])
            if y.all() or not y.any():
                continue
            per_kind[group] = {m: scoring.report(np.concatenate([c[1][m] for c in sel]), y) for m in methods}
        s = np.concatenate([c[1]["model"] for c in clips])
        y = np.concatenate([c[2] for c in clips])
        res = {"videos": paths, "threshold": det.threshold, "stride": det.stride, "score": det.score,
               "smooth": det.smooth, "border": det.border, **per_kind.get("all", {}),
               "per_kind": per_kind, "normal_videos": args.normal_videos,
               "at_threshold": {"tpr": float(np.mean(s[y == 1] > det.threshold)),
                                "fpr": float(np.mean(s[y == 0] > det.threshold))},
               "per_video": per_video, "models": args.model}
        plots.roc_figure({label: np.concatenate([c[1][m] for c in clips]) for m, label in methods.items()}, y,
                         os.path.join(args.out, "roc.png"))
        runio.write_json(res, os.path.join(args.out, "metrics.json"))
        print(f"{'ROC-AUC (pooled with the normal clips)':40s}" + "".join(f"{m[:22]:>24s}" for m in methods))
        for group, rep in per_kind.items():
            print(f"{group:40s}" + "".join(f"{rep[m]['roc_auc']:24.3f}" for m in methods))
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
