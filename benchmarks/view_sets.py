"""Test-time averaging (`views.py`): which views' mean forecast to offer, chosen
on validation digits, then read once on the test digits.

    python benchmarks/view_sets.py --checkpoint results/model.keras --mnist ../shared/data/mnist \
        --split val --out results/views_val.json
    python benchmarks/view_sets.py --checkpoint results/model.keras --mnist ../shared/data/mnist \
        --split test --sets none,CHOSEN --out results/views_test.json

Each set of views is scored by evaluate.py's protocols on the same generated
sequences (the reference generator's truncation, the set `evaluate.py --split
SPLIT` draws). On the validation digits `choose` picks one by RULE:
"""

from __future__ import annotations

import argparse
import os
import time

import common  # (also puts the repository root on sys.path)

RULE = ("the rule picks the set with the lowest 10->10 MSE per frame among those no worse than one pass "
        "(\"none\") on any of the four headline numbers (next-frame PSNR and SSIM, 10->10 MSE and SSIM): "
        "a set must not buy one number with another.")
HEADLINE = (("next_frame", "psnr", 1), ("next_frame", "ssim", 1), ("rollout_10_10", "mse_frame", -1),
            ("rollout_10_10", "ssim", 1))  # (protocol, metric, +1 when higher is better)


def choose(rows: dict) -> str:
    """RULE: rows {set: {protocol: {metric: mean}}} with "none" among them."""
    base = rows["none"]
    fair = [k for k, r in rows.items()
            if all(sign * (r[p][m] - base[p][m]) >= 0 for p, m, sign in HEADLINE)]
    return min(fair, key=lambda k: rows[k]["rollout_10_10"]["mse_frame"])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__ + RULE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="results/model.keras", help="the predictor (default: %(default)s)")
    common.add_generated_set_flags(p, "val")
    p.add_argument("--sets", default="none,transpose,flips,dihedral", help="view sets (default: %(default)s)")
    p.add_argument("--out", required=True, help="JSON to write")
    args = p.parse_args(argv)

    import runio
    from evaluate import evaluate
    from model import load_predictor
    from views import VIEWS

    sets = args.sets.split(",")
    unknown = [s for s in sets if s not in VIEWS]
    if unknown:
        raise SystemExit(f"error: --sets: unknown view sets {unknown}; known: {sorted(VIEWS)}")
    net = load_predictor(args.checkpoint)
    sets_by_offset, desc = common.generated_set(args)
    videos = sets_by_offset[0.0]
    rows, seconds = {}, {}
    for s in sets:
        t0 = time.time()
        res, _ = evaluate(net, videos, views=s)
        seconds[s] = round(time.time() - t0, 1)
        rows[s] = {proto: res[proto]["model"]["mean"] for proto in res}
        nf, ro = rows[s]["next_frame"], rows[s]["rollout_10_10"]
        print(f"{s} ({len(VIEWS[s])} passes, {seconds[s]:.0f} s): next frame PSNR {nf['psnr']:.3f} "
              f"SSIM {nf['ssim']:.4f}; 10->10 MSE/frame {ro['mse_frame']:.2f} SSIM {ro['ssim']:.4f}", flush=True)
    report = {"checkpoint": args.checkpoint,
              "data": {**desc, "note": "the set evaluate.py generates with --split SPLIT (offset 0, truncation)"},
              "passes": {s: len(VIEWS[s]) for s in sets}, "seconds": seconds, "model": rows}
    if args.split == "val" and "none" in rows:
        report["rule"] = RULE
        report["chosen"] = choose(rows)
        print(f"chosen on validation: {report['chosen']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    runio.write_json(report, args.out)


if __name__ == "__main__":
    main()
