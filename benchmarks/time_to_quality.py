"""Time to quality: train a preset from scratch for a wall-clock budget and log
validation PSNR/SSIM (validation digits 8000-8499) against elapsed minutes.

    python benchmarks/time_to_quality.py --preset cpu --minutes 30 --mnist ../shared/data/mnist

Any further train.py option changes the preset (e.g. `--input-skip true --lr 3e-3`).
Writes OUT/time_to_quality.csv and .png, and prints JSON with the first elapsed
minute at which validation SSIM reached --target-ssim (null if never).

    python benchmarks/time_to_quality.py --from-run results/phase1 --out results/phase1

summarises an existing from-scratch run instead of training: its log.csv, with
elapsed minutes from the `elapsed_min` column or, for a log without it, from the
per-epoch seconds Keras printed to RUN/train_stdout.log.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re

import common  # noqa: F401
from cli import seed_arg  # noqa: E402
import runio


def summarise(log: dict, target: float) -> dict:
    """First (elapsed_min, epoch) with val_ssim >= target, and the best values seen."""
    hit = [i for i, s in enumerate(log["val_ssim"]) if s >= target]
    first = hit[0] if hit else None
    return {"target_ssim": target,
            "minutes_to_target": float(log["elapsed_min"][first]) if first is not None else None,
            "epoch_at_target": int(log["epoch"][first]) + 1 if first is not None else None,
            "best_val_ssim": float(max(log["val_ssim"])), "best_val_psnr": float(max(log["val_psnr"])),
            "minutes_trained": float(log["elapsed_min"][-1]), "epochs": len(log["epoch"])}


def epoch_minutes_from_stdout(path: str) -> list:
    """Cumulative minutes at the end of each epoch from Keras verbose=2 lines
    ("100/100 - 201s - 2s/step - loss: ...")."""
    secs = [int(m.group(1)) for m in re.finditer(r"^\s*\d+/\d+ - (\d+)s - ", open(path).read(), re.M)]
    out, total = [], 0.0
    for s in secs:
        total += s / 60.0
        out.append(total)
    return out


def load_run_log(run: str) -> dict:
    import numpy as np


    log = runio.read_log(os.path.join(run, "log.csv"))
    if "elapsed_min" not in log:
        mins = epoch_minutes_from_stdout(os.path.join(run, "train_stdout.log"))
        if len(mins) < len(log["epoch"]):
            raise ValueError(f"{run}: train_stdout.log has {len(mins)} epoch times for {len(log['epoch'])} epochs")
        log["elapsed_min"] = np.array(mins[:len(log["epoch"])])
    return log


def run_config(preset: str, extra: list, steps_per_epoch: int, seed: int):
    """The preset with any train.py options in `extra` applied, as a from-scratch
    run for a time budget: short epochs, no epoch limit, no early stopping."""
    import dataclasses

    import train

    cfg = train.config_from_args(train.parse_args(["--preset", preset, *extra]))
    cfg.train = dataclasses.replace(cfg.train, steps_per_epoch=steps_per_epoch, epochs=100000,
                                    seed=seed, patience=100000)
    return cfg


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--steps-per-epoch", type=int, default=25, help="short epochs give a finer curve")
    p.add_argument("--target-ssim", type=float, default=0.90)
    p.add_argument("--mnist", default=None)
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--out", default=os.path.join("runs", "time_to_quality"))
    p.add_argument("--from-run", default=None, help="summarise this finished from-scratch run instead")
    args, extra = p.parse_known_args(argv)
    import plots
    import train
    from config import Config

    if args.from_run:
        if extra:
            p.error(f"unrecognized arguments: {' '.join(extra)}")
        cfg = Config.load(os.path.join(args.from_run, "config.json"))
        args.preset = cfg.preset
        log = load_run_log(args.from_run)
        os.makedirs(args.out, exist_ok=True)
    else:
        cfg = run_config(args.preset, extra, args.steps_per_epoch, args.seed)
        train.train(cfg, args.out, mnist=args.mnist, overwrite=True, time_budget_min=args.minutes, verbose=0)
        log = runio.read_log(os.path.join(args.out, "log.csv"))
    with open(os.path.join(args.out, "time_to_quality.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["elapsed_min", "epoch", "sequences", "val_psnr", "val_ssim"])
        for i in range(len(log["epoch"])):
            w.writerow([f"{log['elapsed_min'][i]:.3f}", int(log["epoch"][i]) + 1,
                        (int(log["epoch"][i]) + 1) * cfg.train.steps_per_epoch * cfg.train.batch_size,
                        f"{log['val_psnr'][i]:.4f}", f"{log['val_ssim'][i]:.4f}"])
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "val_psnr", "validation PSNR (dB)"), (axes[1], "val_ssim", "validation SSIM")):
        ax.plot(log["elapsed_min"], log[key], marker="o", ms=3)
        ax.set(xlabel="training wall time (min)", ylabel=label, title=label)
        ax.grid(alpha=0.3)
    axes[1].axhline(args.target_ssim, color="k", ls="--", lw=0.8, label=f"target {args.target_ssim}")
    axes[1].legend()
    fig.suptitle(f"Time to quality: preset '{args.preset}' from scratch")
    plots.save_figure(fig, os.path.join(args.out, "time_to_quality.png"))
    res = {"preset": args.preset, **summarise(log, args.target_ssim), "config": cfg.to_dict()}
    runio.write_json(res, os.path.join(args.out, "time_to_quality.json"))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
