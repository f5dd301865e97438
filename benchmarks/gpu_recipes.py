"""Train several predictor recipes side by side on one GPU (Keras on JAX), in pieces.

    KERAS_BACKEND=jax python benchmarks/gpu_recipes.py --mnist DIR --work /tmp/gpu_runs --out OUT

What ran on the lent H100 (results/README.md): the recipes below share one GPU,
each a `train.py` process with a warm-up + cosine schedule sized to the same wall
time. The first call measures each recipe's step rate with all of them running
(a short probe), fixes every run's `--total-steps` from it (plan.json) and starts
them; each call trains for `--call-seconds` and a later call with the same
`--work` resumes them (train.py's BackupAndRestore, schedule and data stream go
on where they stopped). Each call copies every run folder but its backup to
`--out` as RUN.tgz. Recipes are chosen afterwards on validation digits, here on
a CPU with `evaluate.py --split val`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The cpu preset's network (3 ConvLSTM layers, kernels 5/3/1, 4x4 patches, bf16,
# BN momentum 0.9) unless a recipe says otherwise; batch 32, peak lr 2e-3.
COMMON = ["--preset", "cpu", "--batch-size", "32", "--lr", "2e-3", "--lr-schedule", "cosine",
          "--warmup-steps", "500", "--steps-per-epoch", "300", "--val-sequences", "256",
          "--val-rollout-sequences", "128", "--jit-compile", "auto", "--verbose", "2"]
USER_EXTRA: list = []
RECIPES = {
    "bce_gdl": [],
    "mse": ["--bce-weight", "0", "--gdl-weight", "0", "--mse-weight", "1"],
    "bce_gdl_ss": ["--feedback-passes", "2", "--feedback-ramp", "true"],
    "wide128": ["--filters", "128,128,128"],
}


def launch(name, work, mnist, extra, log):
    out = os.path.join(work, name)
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), *COMMON, *RECIPES[name], *extra,
           *USER_EXTRA, "--mnist", mnist, "--out", out]
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.2",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, env=env)


def wait_all(procs, deadline):
    while any(p.poll() is None for p in procs.values()):
        if time.time() > deadline:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(2)
    return {n: p.poll() for n, p in procs.items()}


def probe(work, mnist, names):
    """Seconds per step of each recipe with all of them running at once (epoch 2 of a
    2-epoch run; epoch 1 holds the compilation)."""
    procs = {n: launch(n, os.path.join(work, "probe"), mnist,
                       ["--epochs", "2", "--steps-per-epoch", "40", "--val-rollout-sequences", "0", "--warmup-steps", "0"],
                       os.path.join(work, f"probe_{n}.log")) for n in names}
    wait_all(procs, time.time() + 400)
    rate = {}
    for n in names:
        try:
            with open(os.path.join(work, "probe", n, "log.csv")) as f:
                rows = list(csv.DictReader(f))
            rate[n] = (float(rows[1]["elapsed_min"]) - float(rows[0]["elapsed_min"])) * 60 / 40
        except (OSError, IndexError, KeyError):
            sys.exit(f"probe of {n} failed:\n" + open(os.path.join(work, f"probe_{n}.log")).read()[-3000:])
    return rate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", required=True)
    p.add_argument("--work", required=True, help="run folders (kept between calls on the same machine)")
    p.add_argument("--out", required=True, help="where RUN.tgz and plan.json are copied")
    p.add_argument("--train-seconds", type=float, default=1000,
                   help="wall time of stepping each run's schedule is sized to")
    p.add_argument("--call-seconds", type=float, default=480, help="this call's training time")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--extra", default="", help="train.py flags appended to every run (tests)")
    a = p.parse_args(argv)
    USER_EXTRA[:] = a.extra.split()
    t0 = time.time()
    names = a.recipes.split(",")
    os.makedirs(a.work, exist_ok=True)
    plan_path = os.path.join(a.work, "plan.json")
    if not os.path.exists(plan_path):
        sec_per_step = probe(a.work, a.mnist, names)
        plan = {n: {"sec_per_step": s, "total_steps": int(a.train_seconds / s // 300 * 300)}
                for n, s in sec_per_step.items()}
        with open(plan_path, "w") as f:
            json.dump(plan, f, indent=2)
    plan = json.load(open(plan_path))
    print("plan", json.dumps(plan), flush=True)
    left = a.call_seconds - (time.time() - t0)
    procs = {n: launch(n, a.work, a.mnist,
                       ["--total-steps", str(plan[n]["total_steps"]),
                        "--time-budget-min", f"{max(left - 60, 30) / 60:.2f}"],
                       os.path.join(a.work, f"{n}.log")) for n in names}
    codes = wait_all(procs, t0 + a.call_seconds + 45)
    print("exit codes", codes, flush=True)
    os.makedirs(a.out, exist_ok=True)
    for n in names:
        with tarfile.open(os.path.join(a.out, f"{n}.tgz"), "w:gz") as tar:
            tar.add(os.path.join(a.work, n), arcname=n,
                    filter=lambda ti: None if "/backup" in ti.name else ti)
            tar.add(os.path.join(a.work, f"{n}.log"), arcname=f"{n}/train.log")
    with open(os.path.join(a.out, "plan.json"), "w") as f:
        json.dump({"plan": plan, "exit_codes": codes, "call_seconds": time.time() - t0}, f, indent=2)


if __name__ == "__main__":
    main()
