"""Training throughput: stock Keras reference vs the project's presets.

    python benchmarks/train_throughput.py --quick

Prints one JSON object keyed by configuration: `stock` (the reference model
written plainly with stock Keras layers, 'same' Conv3D head, BCE loss),
`reference` (the project's default model and preset loss), and one per fast
preset (`cpu`). Each has sequences_per_s, gflops_per_s (training FLOPs counted
analytically as 3x the forward pass), peak_rss_mb and the raw step times.
Repetitions are interleaved across configurations; warm-up steps are excluded;
medians are reported. `matmul_gflops_fp32` / `_bf16` are this machine's measured
ceilings. The perceptual term is off in every configuration (its ImageNet
weights are not downloadable here); the reference's loss is BCE + GDL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import common  # noqa: F401  (sets the import path)
from common import PeakRSS, convlstm_stack_flops


def stock_reference():
    """The reference architecture with stock Keras layers only."""
    import keras
    from keras import layers

    inp = keras.Input((None, 64, 64, 1))
    x = inp
    for k in (5, 3, 1):
        x = layers.ConvLSTM2D(64, k, padding="same", return_sequences=True)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    out = layers.Conv3D(1, 3, padding="same", activation="sigmoid")(x)
    m = keras.Model(inp, out)
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return m


def project_model(preset: str, jit_compile: str | None = None):
    import keras

    import losses
    from config import preset_config
    from model import build_model

    cfg = preset_config(preset)
    m = build_model(cfg.model)
    tr = cfg.train
    jit = {"auto": "auto", "true": True, "false": False}[jit_compile or tr.jit_compile]
    m.compile(optimizer=keras.optimizers.Adam(tr.lr), jit_compile=jit,
              loss=losses.CompositeLoss(tr.bce_weight, 0.0, tr.gdl_weight))
    return m, cfg.model


def matmul_gflops(dtype: str, n: int = 2048, reps: int = 10) -> float:
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    t = time.perf_counter()
    for _ in range(reps):
        r = f(a)
    r.numpy()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=19, help="input frames per sequence")
    p.add_argument("--steps", type=int, default=3, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--presets", default="cpu", help="comma-separated fast presets")
    p.add_argument("--quick", action="store_true", help="about two minutes: 2 reps x 1 step")
    p.add_argument("--xla", action="store_true", help="also each fast preset with XLA (NAME_xla)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.reps = 1, 2
    import numpy as np

    from config import ModelConfig

    b, t = args.batch_size, args.seq_len
    x = np.random.default_rng(0).random((b, t, 64, 64, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    ref = ModelConfig()
    configs = {"stock": (stock_reference(), ref), "reference": project_model("seed")}
    for name in args.presets.split(","):
        configs[name] = project_model(name)
        if args.xla:
            configs[f"{name}_xla"] = project_model(name, "true")
    times = {k: [] for k in configs}
    peaks = {k: 0.0 for k in configs}
    for name, (m, _) in configs.items():  # warm-up: tracing and first steps
        m.train_on_batch(x, y)
        m.train_on_batch(x, y)
    for _ in range(args.reps):
        for name, (m, _) in configs.items():
            with PeakRSS() as mem:
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    m.train_on_batch(x, y)
                    times[name].append(time.perf_counter() - t0)
            peaks[name] = max(peaks[name], mem.peak)
    result = {"batch_size": b, "frames_per_sequence": t, "steps_per_rep": args.steps, "reps": args.reps}
    for name, (m, mc) in configs.items():
        step = statistics.median(times[name])
        flops = 3 * t * convlstm_stack_flops(mc.frame_size, mc.channels, mc.filters, mc.kernel_sizes,
                                             mc.head_kernel, mc.patch_size)
        result[name] = {"sequences_per_s": b / step, "gflops_per_s": b * flops / step / 1e9,
                        "train_gflop_per_sequence": flops / 1e9, "peak_rss_mb": round(peaks[name], 1),
                        "step_s": [round(s, 4) for s in times[name]],
                        "patch_size": mc.patch_size, "precision": mc.precision}
    for name in configs:
        if name != "stock":
            result[name]["speedup_vs_stock"] = result[name]["sequences_per_s"] / result["stock"]["sequences_per_s"]
    result["matmul_gflops_fp32"] = matmul_gflops("float32")
    result["matmul_gflops_bf16"] = matmul_gflops("bfloat16")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
