"""Learning curves against the field's: validation 10->10 MSE per frame and SSIM,
and next-frame SSIM, against training sequences seen (log scale) and wall hours.

    python benchmarks/learning_curve.py --run shipped=results --run "3x64 BCE+GDL=results/recipes/bce_gdl" \
        --out results/learning_curve

Each RUN folder needs the log.csv of a run trained with --val-rollout-sequences
(columns val_rollout_mse_frame, val_rollout_ssim, val_next_ssim, elapsed_min)
and its config.json (steps per epoch and batch size give the sequences seen).
Writes OUT.csv and OUT.png. The published ConvLSTM points are marked for scale;
they are on the official Moving MNIST test file, not on our generated
validation digits, so they place a run on the field's curve, nothing finer.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import common  # noqa: F401  (puts the repository root on sys.path)

# (sequences seen, 10->10 MSE per frame, 10->10 SSIM, source)
REFERENCES = [
    (50_000, 101.0, 0.689, "ConvLSTM, 5 epochs (OpenSTL issue #102)"),
    (2_000_000, 29.8, 0.929, "ConvLSTM-S, 200 epochs (OpenSTL)"),
]
COLUMNS = ("val_rollout_mse_frame", "val_rollout_ssim", "val_next_ssim")


def curve(run: str, start: int = 0) -> list[dict]:
    """Rows of (epoch, sequences, hours, the three validation columns) of one run;
    `start`: the sequences its initial model had already seen (a fine-tune)."""
    with open(os.path.join(run, "config.json")) as f:
        tr = json.load(f)["train"]
    with open(os.path.join(run, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in (*COLUMNS, "elapsed_min") if rows and c not in rows[0]]
    if not rows or missing:
        raise SystemExit(f"error: {run}/log.csv has no rows or lacks {missing} "
                         "(train with --val-rollout-sequences N)")
    per_epoch = tr["steps_per_epoch"] * tr["batch_size"]
    return [{"epoch": int(r["epoch"]) + 1, "sequences": start + (int(r["epoch"]) + 1) * per_epoch,
             "hours": float(r["elapsed_min"]) / 60, **{c: float(r[c]) for c in COLUMNS}} for r in rows]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True,
                   help="LABEL=RUN_FOLDER, or LABEL=RUN_FOLDER@N for a fine-tune of a model that had seen N "
                        "sequences (drawn from N on, with open markers and a dashed line) (repeatable)")
    p.add_argument("--out", default=os.path.join("results", "learning_curve"))
    a = p.parse_args(argv)
    runs, fine_tunes = {}, set()
    for item in a.run:
        label, sep, folder = item.partition("=")
        folder, at, start = folder.partition("@")
        if not sep or (at and not start.isdigit()):
            raise SystemExit(f"error: --run takes LABEL=FOLDER or LABEL=FOLDER@SEQUENCES, got {item!r}")
        runs[label] = curve(folder, int(start) if at else 0)
        if at:
            fine_tunes.add(label)

    import plots

    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["run", "epoch", "sequences", "hours", *COLUMNS])
        w.writeheader()
        for label, rows in runs.items():
            for r in rows:
                w.writerow({"run": label, **r})

    plots.learning_curves(runs, REFERENCES, a.out + ".png", fine_tunes)
    print(json.dumps({label: rows[-1] for label, rows in runs.items()}, indent=1))


if __name__ == "__main__":
    main()
