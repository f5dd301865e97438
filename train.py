"""Train the ConvLSTM next-frame predictor on generated Moving MNIST.

    python train.py --preset cpu --mnist ../shared/data/mnist --out runs/cpu

A run folder gets: model.keras (best validation loss, inference-only network),
config.json, log.csv, best.json, loss_curve.png and training_curves.png. A
killed run resumes from its last finished epoch when started again with the same
--out (optimizer state included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from config import PRESETS, CliParser, Config, UserError, preset_config  # noqa: E402
from distribute import STRATEGIES  # noqa: E402

SEED_PRESET_SEQ_PER_S_CPU = 0.5  # benchmarks/train_throughput.py: reference model, 2-core CPU, fp32


# --------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    p = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="seed", choices=sorted(PRESETS),
                   help="seed = reference model and recipe (GPU); cpu = fast CPU model; smoke = seconds")
    p.add_argument("--mnist", default=None,
                   help="local MNIST: folder of IDX .gz files or mnist.npz (else $MNIST_PATH, else download)")
    p.add_argument("--out", default=None, help="run folder (default runs/PRESET)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seq-len", type=int, default=None, help="frames per training sequence")
    p.add_argument("--val-sequences", type=int, default=None)
    p.add_argument("--bce-weight", type=float, default=None)
    p.add_argument("--perceptual-weight", type=float, default=None, help="0 turns the VGG16 term off")
    p.add_argument("--gdl-weight", type=float, default=None)
    p.add_argument("--vgg-weights", default=None,
                   help="local VGG16 notop .h5 for the perceptual term (default: ImageNet download)")
    p.add_argument("--patch-size", type=int, default=None, help="space-to-depth factor (1 = full frames)")
    p.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--filters", default=None, help="comma-separated filters per ConvLSTM layer")
    p.add_argument("--bn-momentum", type=float, default=None, help="BatchNorm moving-average momentum")
    p.add_argument("--input-skip", choices=["true", "false"], default=None,
                   help="the head also reads the input frames <= t (see ModelConfig.input_skip)")
    p.add_argument("--feedback-passes", type=int, default=None,
                   help="extra passes feeding the model its own forecasts after --context-frames")
    p.add_argument("--context-frames", type=int, default=None)
    p.add_argument("--jit-compile", choices=["auto", "true", "false"], default=None)
    p.add_argument("--leaky-head", action="store_true",
                   help="WRONG on purpose: Conv3D 'same' time padding (reads frame t+1); "
                        "only for reproducing published numbers")
    p.add_argument("--init", default=None,
                   help="start from the weights of this model.keras (same architecture), e.g. to fine-tune")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute: mirrored = all local GPUs (or logical CPUs); multiworker = "
                        "MultiWorkerMirroredStrategy configured by TF_CONFIG; auto = multiworker if "
                        "TF_CONFIG is set, mirrored if several GPUs, else none (see distribute.py)")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="stop after the first epoch that ends past this many minutes (resumable)")
    p.add_argument("--verbose", type=int, default=None, help="Keras fit verbosity (default: 1 on a TTY, else 2)")
    return p.parse_args(argv)


def config_from_args(args) -> Config:
    cfg = preset_config(args.preset)
    m = {"patch_size": args.patch_size, "precision": args.precision, "bn_momentum": args.bn_momentum}
    if args.filters:
        m["filters"] = tuple(int(f) for f in args.filters.split(","))
        if len(m["filters"]) != len(cfg.model.kernel_sizes):
            raise UserError(f"--filters needs {len(cfg.model.kernel_sizes)} values")
    if args.input_skip is not None:
        m["input_skip"] = args.input_skip == "true"
    if args.leaky_head:
        m["causal"] = False
    t = {"seed": args.seed, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
         "batch_size": args.batch_size, "lr": args.lr, "seq_len": args.seq_len,
         "val_sequences": args.val_sequences, "bce_weight": args.bce_weight,
         "perceptual_weight": args.perceptual_weight, "gdl_weight": args.gdl_weight,
         "perceptual_weights": args.vgg_weights, "feedback_passes": args.feedback_passes,
         "context_frames": args.context_frames, "jit_compile": args.jit_compile}
    cfg.model = dataclasses.replace(cfg.model, **{k: v for k, v in m.items() if v is not None})
    cfg.train = dataclasses.replace(cfg.train, **{k: v for k, v in t.items() if v is not None})
    tr = cfg.train
    if tr.seq_len < 2 or tr.batch_size < 1 or tr.epochs < 1 or tr.steps_per_epoch < 1 or tr.lr <= 0:
        raise UserError("--seq-len must be >= 2 and --batch-size, --epochs, --steps-per-epoch, --lr positive")
    if tr.feedback_passes and tr.context_frames >= tr.seq_len - 1:
        raise UserError(f"--context-frames {tr.context_frames} leaves no frame to feed back "
                        f"in sequences of {tr.seq_len} frames")
    if min(tr.bce_weight, tr.perceptual_weight, tr.gdl_weight) < 0 or \
            not (tr.bce_weight or tr.perceptual_weight or tr.gdl_weight):
        raise UserError("loss weights must be >= 0 and not all zero")
    return cfg


# ------------------------------------------------------------------ training parts

def make_forecaster(net, feedback_passes: int, context_frames: int):
    """Wraps the network for training; with feedback passes, training calls feed
    the network its own forecasts after `context_frames` true frames."""
    import keras
    from keras import ops

    class Forecaster(keras.Model):
        def __init__(self):
            super().__init__(name="forecaster")
            self.net = net

        def call(self, x, training=False):
            y = self.net(x, training=training)
            if training:
                k = context_frames
                for _ in range(feedback_passes):
                    fed = ops.cast(y[:, k - 1:-1], x.dtype)
                    y = self.net(ops.concatenate([x[:, :k], fed], axis=1), training=training)
            return y

    return Forecaster()


def make_callbacks(net, out: str, tr, time_budget_min: float | None):
    import keras

    class BestCheckpoint(keras.callbacks.Callback):
        """Saves the network (not the training wrapper) when val_loss improves:
        written to a temporary file, then renamed, so model.keras is never half-written."""

        def __init__(self):
            super().__init__()
            self.path = os.path.join(out, "model.keras")
            self.best_path = os.path.join(out, "best.json")
            self.best = json.load(open(self.best_path))["val_loss"] if os.path.exists(self.best_path) else float("inf")

        def on_epoch_end(self, epoch, logs=None):
            v = (logs or {}).get("val_loss")
            if v is None or not v < self.best:
                return
            self.best = float(v)
            tmp = os.path.join(out, f".model.tmp{os.getpid()}.keras")
            net.save(tmp)
            os.replace(tmp, self.path)
            import plots

            plots.write_json({"epoch": epoch + 1, **{k: float(x) for k, x in logs.items()}}, self.best_path)

    class TimeBudget(keras.callbacks.Callback):
        """Adds `elapsed_min` (training wall time, summed over resumed runs) to the
        logs and stops after the first epoch that ends past `minutes` of this process."""

        def __init__(self, minutes):
            super().__init__()
            self.minutes, self.start, self.hit = minutes, time.time(), False
            self.before = 0.0
            log = os.path.join(out, "log.csv")
            if os.path.exists(log) and os.path.getsize(log):
                import plots

                prev = plots.read_log(log).get("elapsed_min")
                self.before = float(prev[-1]) if prev is not None and len(prev) else 0.0

        def on_epoch_end(self, epoch, logs=None):
            minutes = (time.time() - self.start) / 60
            if logs is not None:
                logs["elapsed_min"] = self.before + minutes
            if self.minutes is not None and minutes > self.minutes:
                self.hit = True
                self.model.stop_training = True

    budget = TimeBudget(time_budget_min)
    cbs = [
        keras.callbacks.BackupAndRestore(os.path.join(out, "backup"), delete_checkpoint=False),
        keras.callbacks.TerminateOnNaN(),
        budget,
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                          patience=max(1, tr.patience // 2), min_lr=1e-5),
        BestCheckpoint(),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=tr.patience),
        keras.callbacks.CSVLogger(os.path.join(out, "log.csv"), append=True),
    ]
    return cbs, budget


def prepare_out(out: str, overwrite: bool) -> bool:
    """Creates the run folder; True when resuming an interrupted run."""
    os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UserError(f"--out {out} is not writable")
    if os.path.isdir(os.path.join(out, "backup")):
        return True
    finished = [f for f in ("model.keras", "log.csv") if os.path.exists(os.path.join(out, f))]
    if finished and not overwrite:
        raise UserError(f"{out} already holds a run ({', '.join(finished)}); "
                        "pass --overwrite to replace it or --out NEW_FOLDER")
    for f in ("model.keras", "log.csv", "best.json"):
        if os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))
    return False


def write_curves(out: str):
    import plots

    log = plots.read_log(os.path.join(out, "log.csv"))
    plots.loss_curve(log, os.path.join(out, "loss_curve.png"))
    plots.training_curves(log, os.path.join(out, "training_curves.png"))


def train(cfg: Config, out: str, mnist=None, overwrite=False, time_budget_min=None, verbose=None,
          init=None, strategy="none"):
    """Trains `cfg` into the run folder `out`; returns the Keras History."""
    import keras
    import numpy as np
    import tensorflow as tf

    import data
    import distribute
    import losses
    import metrics
    from model import build_model

    tr = cfg.train
    if not tf.config.list_physical_devices("GPU") and cfg.preset == "seed" and cfg.model.patch_size == 1:
        est = tr.steps_per_epoch * tr.batch_size / SEED_PRESET_SEQ_PER_S_CPU / 60
        print(f"note: no GPU found; the seed preset trains at about {SEED_PRESET_SEQ_PER_S_CPU:g} "
              f"sequence/s on a 2-core CPU (~{est:.0f} min per epoch); --preset cpu is the CPU-sized "
              "model (space-to-depth patches + bf16). Carrying on.", flush=True)
    # The strategy first: MultiWorkerMirroredStrategy must exist before any other
    # TensorFlow work (the perceptual term builds VGG16). Then everything that can
    # fail fast does so before any training work.
    strat = strategy if not isinstance(strategy, str) else distribute.make_strategy(strategy)
    loss = losses.CompositeLoss(tr.bce_weight, tr.perceptual_weight, tr.gdl_weight,
                                perceptual_weights=tr.perceptual_weights,
                                perceptual_layer=tr.perceptual_layer)
    train_digits = data.load_mnist_digits(mnist, "train")
    val_digits = data.load_mnist_digits(mnist, "val")
    worker, _ = distribute.worker_info(strat)
    out = distribute.chief_out(out, strat)
    resuming = prepare_out(out, overwrite)
    cfg.save(os.path.join(out, "config.json"))

    keras.utils.set_random_seed(tr.seed)
    with strat.scope():
        net = build_model(cfg.model)
        model = make_forecaster(net, tr.feedback_passes, tr.context_frames)
        size, ch = cfg.model.frame_size, cfg.model.channels
        model(np.zeros((1, 2, size, size, ch), np.float32))  # build (BackupAndRestore needs it)
        if init and not resuming:
            from evaluate import load_predictor

            src = load_predictor(init)
            try:
                net.set_weights(src.get_weights())
            except ValueError as e:
                raise UserError(f"--init {init}: not the same architecture as this config ({e})") from None
        jit = {"auto": "auto", "true": True, "false": False}[str(tr.jit_compile).lower()]
        model.compile(optimizer=keras.optimizers.Adam(tr.lr), loss=loss, jit_compile=jit,
                      metrics=["mae", metrics.PSNR(), metrics.SSIM(), metrics.PixelAccuracy()])
    global_batch = distribute.global_batch(strat, tr.batch_size)
    train_ds = data.train_dataset(train_digits, global_batch, tr.seq_len, tr.num_digits, tr.seed, worker)
    val = data.validation_videos(val_digits, tr.val_sequences, tr.seq_len, tr.num_digits, tr.seed)
    val_ds = data.fixed_dataset(val, global_batch)
    callbacks, budget = make_callbacks(net, out, tr, time_budget_min)
    if resuming:
        print(f"resuming the interrupted run in {out}", flush=True)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    t0 = time.time()
    history = model.fit(train_ds, epochs=tr.epochs, steps_per_epoch=tr.steps_per_epoch,
                        validation_data=val_ds, callbacks=callbacks, verbose=verbose)
    elapsed = time.time() - t0
    if not budget.hit:  # finished (epochs done or early stop): nothing left to resume
        shutil.rmtree(os.path.join(out, "backup"), ignore_errors=True)
    if os.path.exists(os.path.join(out, "log.csv")):
        write_curves(out)
    if not os.path.exists(os.path.join(out, "model.keras")):
        raise UserError("training produced no checkpoint (validation loss never finite)")
    seqs = len(history.epoch) * tr.steps_per_epoch * global_batch
    print(f"trained {len(history.epoch)} epochs ({seqs} sequences) in {elapsed / 60:.1f} min; "
          f"best model: {os.path.join(out, 'model.keras')}"
          + (" (time budget reached: run again to resume)" if budget.hit else ""), flush=True)
    return history


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
        out = args.out or os.path.join("runs", args.preset)
        train(cfg, out, mnist=args.mnist, overwrite=args.overwrite,
              time_budget_min=args.time_budget_min, verbose=args.verbose, init=args.init,
              strategy=args.strategy)
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # data and weights errors carry their own fix
        from data import DataError
        from losses import PerceptualWeightsError

        if isinstance(e, (DataError, PerceptualWeightsError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
