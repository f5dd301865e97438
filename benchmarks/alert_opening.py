"""Does a minimum duration to open an alert buy fewer false alarms? Compared on choice clips.

    python benchmarks/alert_opening.py --model runs/mixed_fused \
        --normal-videos "data/crowd/train/normal_0[89].mp4" --videos "data/crowd/val/*.mp4" \
        --out runs/mixed_alert_opening_val.json

The fused detector's alert opens at the first frame above the threshold, and
its causal max over `smooth` frames holds it. Here each part's frame scores,
before that max, first pass through a causal min over k frames (a morphological
opening): a part counts at a level only once it has stayed there for k frames
in a row, so a one-frame spike opens nothing. k = 1 is the shipped score. With
--parts, the min applies only to the named parts listed (e.g. motion/surprise:
a part of the motion part's maximum), the others as shipped. Per k,
the part scales (`anomaly.fusion.part_scales`) and the threshold are refitted on
the clips of --normal-videos, at the detector's own percentiles, as
`anomaly.calibrate` fits them (the motion part's own part scales stay as saved);
then on the clips of --videos: pooled frame ROC-AUC per group
(`anomaly.evaluate.per_group_reports`), and what the alarm does at the
threshold (`anomaly.evaluate.alarm_report`: recall, normal frames flagged,
false alarms per minute, median delay). A tool for choices: run it on
validation clips only. Writes OUT (JSON).
"""

from __future__ import annotations

import json
import os

import numpy as np

import common  # puts the repository root on sys.path; fused_part_scores

KS = (1, 3, 5)  # frames a part must stay at a level before it counts (1: shipped)


def causal_min(scores: np.ndarray, k: int) -> np.ndarray:
    """Minimum of each frame's score and the k-1 before it, NaNs ignored (NaN where all k are)."""
    from anomaly.cells import causal_max

    return -causal_max(-np.asarray(scores, np.float64), k)


def opening(scores: np.ndarray, k: int, smooth: int) -> np.ndarray:
    """(T,) unsmoothed part scores -> the causal min over k frames, then the
    detector's causal max over `smooth` frames (k = 1: the shipped score)."""
    from anomaly.cells import causal_max

    return causal_max(causal_min(scores, k), smooth)


def opening_table(clips: list, normal: list, smooth: int, scale_percentile: float, percentile: float,
                  ks=KS, only=None) -> dict:
    """For each k, the fused score refitted and scored.

    Args:
        clips: labelled clips, (kind, {part: {named part: (T,) unsmoothed scores}}, (T,) labels, fps)
            each; a part's score is the maximum of its named parts.
        normal: {part: {named part: (T,) unsmoothed scores}} of each normal clip the scales and
            threshold come from.
        smooth: the detector's causal max, frames.
        scale_percentile, percentile: the detector's (each part's scale, the threshold).
        only: the named parts the min applies to, e.g. "motion/surprise" (None: all).
    Returns:
        {k: {"threshold", "roc_auc": {group: ROC-AUC}, "alarm": {group: alarm_report's}}}.
    """
    from anomaly.cells import percentile_threshold
    from anomaly.evaluate import ScoredClip, alarm_report, per_group_reports
    from anomaly.fusion import fuse, part_scales

    table = {}
    for k in ks:
        def held(parts):
            return {n: np.max([opening(s, k if only is None or sub in only else 1, smooth) for sub, s in subs.items()],
                              axis=0) for n, subs in parts.items()}

        cal = [held(c) for c in normal]
        scales = part_scales(cal, scale_percentile)
        threshold = percentile_threshold(np.concatenate([fuse(c, scales) for c in cal]), percentile)
        scored = []
        for kind, parts, labels, fps in clips:
            s = fuse(held(parts), scales)
            keep = np.isfinite(s)
            scored.append(ScoredClip(kind, {"model": s[keep]}, labels[keep], s, labels, {}, fps))
        roc = {g: round(r["model"]["roc_auc"], 3) for g, r in per_group_reports(scored, ["model"]).items()}
        table[k] = {"threshold": threshold, "roc_auc": roc, "alarm": alarm_report(scored, threshold)}
    return table


def main(argv=None):
    def more(p):
        p.add_argument("--parts", nargs="+", default=None, metavar="NAME",
                       help="named parts the min applies to, e.g. motion/surprise (default: all)")
        p.add_argument("--ks", nargs="+", type=int, default=list(KS), metavar="K",
                       help=f"frames a part must stay at a level; 1 = shipped (default: {' '.join(map(str, KS))})")

    args = common.fused_choice_args(__doc__, argv, "the scales and threshold come from", more)
    if min(args.ks) < 1:
        raise SystemExit(f"error: --ks must be frames >= 1, got {args.ks}")

    from anomaly.fusion import FusedDetector

    det = FusedDetector.load(args.model)
    smooth = det.parts[det.config.parts[0]].smooth
    for part in det.parts.values():  # the scores before the causal max, which `opening` applies
        part.smooth = 1
    normal = common.fused_part_scores(det, args.normal_videos, labelled=False, flag="--normal-videos")
    clips = common.fused_part_scores(det, args.videos)
    names = {sub for subs in normal[0].values() for sub in subs}
    if args.parts is not None and not set(args.parts) <= names:
        raise SystemExit(f"error: --parts must be among {sorted(names)}, got {args.parts}")
    table = opening_table(clips, normal, smooth, det.config.scale_percentile, det.config.percentile,
                          ks=args.ks, only=args.parts)
    for k, row in table.items():
        alarm = row["alarm"].get("all", {})
        print(f"k={k}: ROC-AUC {row['roc_auc']}; all: recall {alarm.get('recall', 0):.2f}, "
              f"false alarms/min {alarm.get('false_alarms_per_min') or 0:.2f}, "
              f"median delay {alarm.get('median_delay_s')} s", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"model": args.model, "normal_videos": args.normal_videos, "videos": args.videos,
                   "parts": args.parts or sorted(names), "smooth": smooth, "by_k": table}, f, indent=2)


if __name__ == "__main__":
    main()
