"""How the fused detector combines its parts, compared on choice clips.

    python benchmarks/fusion_rules.py --model runs/real/fused \
        --normal-videos "data/real/val/normal_*.mp4" --videos "data/real/val/*.mp4" \
        --out runs/real/fusion_rules_val.json

Each part's frame scores (the max of its named parts, `FusedDetector.named_part_scores`) on the clips of
--videos; each part divided by a percentile of its scores on the normal clips
of --normal-videos (its scale, `anomaly.fusion.part_scales`, as `anomaly.calibrate`
sets it), then combined
by a rule:

    max     the shipped rule (`anomaly.fusion.fuse`): the part that finds the frame more unusual
    mean    the parts' mean: evidence from both adds up
    excess  the sum of each part's excess over its normal median, in units of its
            normal range (scale - median), a part below its median counting 0:
            evidence adds up, but a part that finds the frame more normal than
            usual (the autoencoder on a crowd that stops) cannot pull it down
    excess_l2  the same excesses' root of summed squares (between excess and a max)
    centred_max  the max of each part's (score - median) / (scale - median): the max, with
            each part's normal frames centred, so that a part whose normal scores sit
            just below its scale (the motion part on the mixed scene: `normal_levels`
            in OUT) does not outrank the other part's anomalies on ordinary frames
    max_or_excess  max and excess as two parts of a max, each over the same percentile
            of its own scores on the normal clips: one part alone raises a frame as
            the max does, several parts a little above their medians as the excess does

at the scale percentiles of SWEEP (the shipped detector: max at 99), beside each part alone; and,
with no scale:

    rank    each named part (reconstruct, motion/surprise, motion/pace, motion/counts) placed
            among its own scores on the normal clips' frames that every part scores (the share
            of them it exceeds, linear between them; above their largest 1 + the excess in units
            of it), the largest: every part's normal frames spread alike over [0, 1], so no
            part's ordinary level hides another's evidence

Pooled frame ROC-AUC per anomaly group, on the frames every part scores. This is a tool for
choices: run it on validation clips only. Writes OUT (JSON).
"""

from __future__ import annotations

import json
import os

import numpy as np

import common  # puts the repository root on sys.path; fused_part_scores

def _scaled(scores: dict, scales: dict) -> np.ndarray:
    """(parts, T): each part's scores in units of its scale."""
    return np.stack([np.asarray(scores[n], np.float64) / c for n, c in scales.items()])


def _centred(scores: dict, scales: dict, medians: dict) -> np.ndarray:
    """(parts, T): each part's scores less its normal median, in units of (scale - median)."""
    return np.stack([(np.asarray(scores[n], np.float64) - medians[n]) / max(scales[n] - medians[n], 1e-6)
                     for n in scales])


def _excesses(scores: dict, scales: dict, medians: dict) -> np.ndarray:
    """(parts, T): each part's excess over its normal median in units of (scale - median), at least 0."""
    return np.maximum(_centred(scores, scales, medians), 0)


def _rules() -> dict:
    """{name: rule(scores, scales, medians) -> (T,)}, with each part's scale and median on the
    normal clips; "max" is the detector's own `anomaly.fusion.fuse`."""
    from anomaly.fusion import fuse

    return {"max": lambda s, c, m: fuse(s, c),
            "mean": lambda s, c, m: _scaled(s, c).mean(0),
            "excess": lambda s, c, m: _excesses(s, c, m).sum(0),
            "excess_l2": lambda s, c, m: np.sqrt((_excesses(s, c, m) ** 2).sum(0)),
            "centred_max": lambda s, c, m: _centred(s, c, m).max(0)}


def _max_or_excess(normal: list, scales: dict, medians: dict, percentile: float):
    """The rule max_or_excess at these part scales and medians: scores -> (T,), the
    larger of the max and the excess rules, each divided by its `percentile` on the
    normal clips ({part: (T,) scores} each)."""
    from anomaly.cells import percentile_scale

    rules = _rules()
    pair = ("max", "excess")
    q = {r: percentile_scale(np.concatenate([rules[r](s, scales, medians) for s in normal]), percentile)
         for r in pair}
    return lambda s: np.maximum(*(rules[r](s, scales, medians) / q[r] for r in pair))


SWEEP = (90, 95, 99)  # scale percentiles (99: shipped)


def normal_levels(normal: list, sweep=SWEEP) -> dict:
    """{percentile: {part: value}} of each part's scores on the normal clips, at 50
    (the medians the rules centre on) and at each scale percentile of `sweep` (the
    scales, as the detector's calibration sets them)."""
    from anomaly.fusion import part_scales

    return {q: part_scales(normal, q) for q in (50, *sweep)}


def _flat(by_part: dict) -> dict:
    """{part: {named part: scores}} -> {named part: scores}."""
    return {n: v for named in by_part.values() for n, v in named.items()}


def _rank_rule(normal: list):
    """The rank rule fitted on normal clips ({named part: (T,) scores} each): scores -> (T,)."""
    names = list(normal[0])
    stacked = [np.stack([np.asarray(c[n], np.float64) for n in names]) for c in normal]
    v = np.sort(np.concatenate([x[:, np.isfinite(x).all(axis=0)] for x in stacked], axis=1), axis=1)
    probs = np.linspace(0.0, 1.0, v.shape[1])

    def place(s, sorted_normal):
        s = np.asarray(s, np.float64)
        top = max(sorted_normal[-1], 1e-6)
        return np.where(s > sorted_normal[-1], 1.0 + (s - sorted_normal[-1]) / top, np.interp(s, sorted_normal, probs))

    return lambda scores: np.max([place(scores[n], v[k]) for k, n in enumerate(names)], axis=0)


def part_level(named: dict) -> dict:
    """{part: {named part: (T,) scores}} -> {part: (T,) its score, the max of its named parts}."""
    return {p: np.max(np.stack(list(subs.values())), axis=0) for p, subs in named.items()}


def rule_table(clips: list, normal: list, rules=None, sweep=SWEEP) -> dict:
    """ROC-AUC of each rule and scale percentile, per group of `kind_groups`.

    Args:
        clips: labelled clips, (kind, {part: {named part: (T,) scores}}, (T,) labels) each.
        normal: {part: {named part: (T,) scores}} of each normal clip the scales come from.
        rules: {name: rule(scores, scales, medians)} of the parts' scores, default
            `_rules()`; the max_or_excess row, which also needs the normal clips'
            scores, and the rank row of the named parts are always added.
    Returns:
        {"PART alone", "RULE @PCT" or "rank": {group: ROC-AUC}}, on the frames where
        every part has a score.
    """
    from anomaly.evaluate import kind_groups
    from anomaly.scoring import roc_auc

    rules = rules or _rules()
    ranked_by = _rank_rule([_flat(c) for c in normal])
    ranked = [ranked_by(_flat(s)) for _, s, _ in clips]
    clips = [(k, part_level(s), y) for k, s, y in clips]
    normal = [part_level(c) for c in normal]
    parts = sorted(clips[0][1])
    groups = kind_groups([k for k, _, _ in clips])
    keep = [np.all([np.isfinite(s[n]) for n in parts], 0) for _, s, _ in clips]

    def row(scores):
        out = {}
        for group, kinds in groups.items():
            sel = [i for i, (k, _, _) in enumerate(clips) if k in kinds]
            out[group] = round(roc_auc(np.concatenate([scores[i][keep[i]] for i in sel]),
                                       np.concatenate([clips[i][2][keep[i]] for i in sel])), 3)
        return out

    table = {f"{n} alone": row([s[n] for _, s, _ in clips]) for n in parts}
    levels = normal_levels(normal, sweep)
    for pct in sweep:
        for name, rule in rules.items():
            table[f"{name} @{pct:g}"] = row([rule(s, levels[pct], levels[50]) for _, s, _ in clips])
        either = _max_or_excess(normal, levels[pct], levels[50], pct)
        table[f"max_or_excess @{pct:g}"] = row([either(s) for _, s, _ in clips])
    table["rank"] = row(ranked)
    return table


def main(argv=None):
    args = common.fused_choice_args(__doc__, argv)

    from anomaly.fusion import FusedDetector

    det = FusedDetector.load(args.model)
    normal = common.fused_part_scores(det, args.normal_videos, labelled=False, flag="--normal-videos")
    clips = [c[:3] for c in common.fused_part_scores(det, args.videos)]
    table = rule_table(clips, normal)
    for name, row in table.items():
        print(name, row, flush=True)
    # where each part's normal scores sit: its median against its scales
    levels = {f"p{q:g}": {n: round(v, 4) for n, v in lv.items()}
              for q, lv in normal_levels([part_level(c) for c in normal]).items()}
    print("normal levels", levels)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"model": args.model, "normal_videos": args.normal_videos, "videos": args.videos,
                   "clips": len(clips), "normal_levels": levels, "roc_auc": table}, f, indent=2)


if __name__ == "__main__":
    main()
