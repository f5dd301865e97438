"""How a motion detector's frame score is assembled, compared on choice clips.

    python benchmarks/motion_scoring.py --model runs/m30/results/anomaly/lanes/model --model runs/lanes100 \
        --videos "data/crowd/lanes/val/*.mp4" --videos "data/crowd/lanes/test/*.mp4" \
        --out results/anomaly/lanes/motion_scoring.json

For each trained motion detector (its own fit / held-out split of its training
clips, read from its detector.json) and each set of parts, the frame score is
the largest part divided by its 95th percentile on the held-out normal clips,
then the detector's causal smoothing; pooled frame ROC-AUC per anomaly group on
the clips of --videos (frames from frame 1 on, as the detector scores them).
Then, for the three parts of `anomaly.motion`, the same with each part divided
by other percentiles (SWEEP) of its held-out values.
The parts:

    surprise_local  the motion model's worst-cell -log p(observed bin)
    surprise_mean   the same, the mean over the cells
    surprise_excess the worst cell's -log p(observed bin) less the entropy of
                    the cell's predicted bins (what that surprise is on average
                    where the model expects people to go either way)
    pace            the crowd's speed against the speed the model expects
    counts_mean     the per-location counts' surprise (`motion.fit_counts` on the
                    detector's fit clips), the mean over the cells

This is a tool for choices: run it on validation clips only. Writes OUT (JSON).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import common  # noqa: F401  (puts the repository root on sys.path)

PART_SETS = {
    "surprise_local + pace (shipped before)": ("surprise_local", "pace"),
    "+ surprise_mean": ("surprise_local", "surprise_mean", "pace"),
    "+ counts_mean": ("surprise_local", "pace", "counts_mean"),
    "+ surprise_mean + counts_mean": ("surprise_local", "surprise_mean", "pace", "counts_mean"),
    "surprise_excess + pace + counts_mean": ("surprise_excess", "pace", "counts_mean"),
    "surprise_excess + pace": ("surprise_excess", "pace"),
}
SWEEP = (90, 97, 98, 99, 99.5, 99.9, 100)  # scale percentiles tried for the three parts


def clip_parts(det, counts, raw: np.ndarray) -> dict:
    """{part: (T,)} for one clip's raw features (frame 0, which has no flow, NaN)."""
    from anomaly.motion import DENSITY, bin_model, cell_surprise, frame_parts

    cfg, norm = det.motion_cfgs[0], det.normalizers[0]
    y = det.models[0].predict(norm(raw[1:])[..., DENSITY:DENSITY + 1], batch_size=64, verbose=0)
    local, mean = frame_parts(y, raw[1:], cfg, "local", counts), frame_parts(y, raw[1:], cfg, "mean")
    seen, lp = cell_surprise(y["logits"], bin_model(cfg).motion_bins(raw[1:]))
    entropy = -(np.exp(lp) * lp).sum(axis=-1)
    parts = {"surprise_local": local[:, 0], "surprise_mean": mean[:, 0], "pace": local[:, 1],
             "counts_mean": local[:, 2], "surprise_excess": (seen - entropy).max(axis=(-2, -1))}
    return {k: np.r_[np.nan, v] for k, v in parts.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="motion detector folder (repeat)")
    p.add_argument("--videos", action="append", required=True, help="glob of labelled choice clips (repeat)")
    p.add_argument("--out", required=True, help="JSON to write")
    args = p.parse_args(argv)

    from anomaly.cells import causal_max
    from anomaly.detector import Detector, MotionDetector
    from anomaly.evaluate import clip_kind, kind_groups
    from anomaly.motion import fit_counts
    from anomaly.scoring import roc_auc
    from anomaly.video import expand_videos, read_labels, read_video

    paths = [q for g in args.videos for q in expand_videos(g)]
    results = {}
    for folder in args.model:
        det = Detector.load(folder)
        c = det.configs[0]
        if not isinstance(det, MotionDetector):
            raise SystemExit(f"error: {folder} is not a motion detector")
        held_paths = c.videos[-c.val_clips:]
        fit_paths = c.videos[:-c.val_clips]
        counts = fit_counts([det.features(read_video(q)) for q in fit_paths], det.motion_cfgs[0])
        held = [clip_parts(det, counts, det.features(read_video(q))) for q in held_paths]
        clips = {}
        for q in paths:
            stem = os.path.splitext(os.path.basename(q))[0]
            key = f"{os.path.basename(os.path.dirname(q))}/{stem}"
            clips[key] = (clip_kind(stem), clip_parts(det, counts, det.features(read_video(q))),
                          read_labels(q[:-4] + ".labels.txt"))
        variants = [(f"{name} @95", parts, 95) for name, parts in PART_SETS.items()]
        variants += [(f"+ counts_mean @{pct:g}", PART_SETS["+ counts_mean"], pct) for pct in SWEEP]
        for name, parts, pct in variants:
            scales = [np.nanpercentile(np.concatenate([h[k] for h in held]), pct) for k in parts]
            scores = {key: causal_max(np.max([part[k] / s for k, s in zip(parts, scales)], axis=0), det.smooth)
                      for key, (_, part, _) in clips.items()}
            row = {}
            for group, kinds in kind_groups([kind for kind, _, _ in clips.values()]).items():
                sel = [key for key, (kind, _, _) in clips.items() if kind in kinds]
                row[group] = round(roc_auc(np.concatenate([scores[k][1:] for k in sel]),
                                           np.concatenate([clips[k][2][1:] for k in sel])), 3)
            results[f"{folder}: {name}"] = row
            print(f"{folder}: {name}", row, flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"videos": args.videos, "clips": len(paths), "first_scored_frame": 1, "roc_auc": results}, f,
                  indent=2)


if __name__ == "__main__":
    main()
