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
import math
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import keras  # noqa: E402
from keras import ops  # noqa: E402

import runio  # noqa: E402
from cli import CliParser, InputError, UserError, output_dir, run_cli, seed_arg  # noqa: E402
from config import PRESETS, Config, preset_config  # noqa: E402
from distribute import STRATEGIES  # noqa: E402

SEED_PRESET_SEQ_PER_S_CPU = 0.5  # benchmarks/train_throughput.py: reference model, 2-core CPU, fp32


# --------------------------------------------------------------------------- CLI

def jitter_width(text: str) -> float:
    """--subpixel-jitter's value: a number, or true (1) / false (0); `config_from_args`
    checks its range, as it checks a config.json's."""
    words = {"true": 1.0, "false": 0.0}
    try:
        return words[text] if text in words else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a width in [0, 1], true or false, got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = CliParser(__doc__, "python train.py")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="seed = reference model and recipe (GPU; the default); cpu = fast CPU model; smoke = seconds")
    p.add_argument("--config", default=None, metavar="RUN/config.json",
                   help="start from a saved run's whole config (reproduces it); flags given as well override it")
    p.add_argument("--mnist", default=None,
                   help="local MNIST: folder of IDX .gz files or mnist.npz (else $MNIST_PATH, else download)")
    p.add_argument("--out", default=None, help="run folder (default runs/PRESET, the config's preset)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    P = " (default: the preset's, see config.py)"
    p.add_argument("--seed", type=seed_arg, default=None, help="seed of the weights and the data stream" + P)
    p.add_argument("--epochs", type=int, default=None, help="epochs (ignored with --total-steps)" + P)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="optimizer steps per epoch" + P)
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step, per replica" + P)
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (the peak of a schedule)" + P)
    p.add_argument("--seq-len", type=int, default=None, help="frames per training sequence" + P)
    p.add_argument("--val-sequences", type=int, default=None, help="fixed validation sequences" + P)
    p.add_argument("--bce-weight", type=float, default=None, help="weight of the binary cross-entropy term" + P)
    p.add_argument("--perceptual-weight", type=float, default=None,
                   help="weight of the VGG16 perceptual term, 0 turns it off" + P)
    p.add_argument("--gdl-weight", type=float, default=None, help="weight of the gradient-difference term" + P)
    p.add_argument("--mse-weight", type=float, default=None, help="weight of a per-pixel MSE term" + P)
    p.add_argument("--l1-weight", type=float, default=None, help="weight of a per-pixel L1 term" + P)
    p.add_argument("--vgg-weights", default=None,
                   help="local VGG16 notop .h5 for the perceptual term (default: ImageNet download)")
    p.add_argument("--patch-size", type=int, default=None, help="space-to-depth factor (1 = full frames)" + P)
    p.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default=None,
                   help="compute precision (mixed for the 16-bit ones)" + P)
    p.add_argument("--filters", default=None, help="comma-separated filters per ConvLSTM layer" + P)
    p.add_argument("--bn-momentum", type=float, default=None, help="BatchNorm moving-average momentum" + P)
    p.add_argument("--input-skip", choices=["true", "false"], default=None,
                   help="the head also reads the input frames <= t (see ModelConfig.input_skip)" + P)
    p.add_argument("--feedback-passes", type=int, default=None,
                   help="extra passes feeding the model its own forecasts after --context-frames" + P)
    p.add_argument("--context-frames", type=int, default=None,
                   help="true frames before fed-back forecasts, and of the validation rollout" + P)
    p.add_argument("--feedback-ramp", choices=["true", "false"], default=None,
                   help="scheduled sampling: the share of fed-back forecasts rises from 0 to 1 over "
                        "the run's total steps (see TrainConfig.feedback_ramp)" + P)
    p.add_argument("--subpixel-jitter", type=jitter_width, default=None, metavar="W",
                   help="train on the sub-pixel rasterisations floor(position x 36 + u), u uniform in "
                        "[0, W), not only the reference's truncation: 0.5 (truncation and rounding at "
                        "the two ends), 1 or true (every one), 0 or false (off; see "
                        "TrainConfig.subpixel_jitter)" + P)
    p.add_argument("--lr-schedule", choices=["plateau", "cosine"], default=None,
                   help="plateau = halve on a val_loss plateau + early stopping; cosine = warm-up + "
                        "cosine decay sized to --total-steps" + P)
    p.add_argument("--total-steps", type=int, default=None,
                   help="optimizer steps the run is sized to (0 = epochs x steps per epoch)" + P)
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up of the cosine schedule" + P)
    p.add_argument("--val-rollout-sequences", type=int, default=None,
                   help="validation sequences scored by the 10->10 protocol each epoch (0 = off)" + P)
    p.add_argument("--jit-compile", choices=["auto", "true", "false"], default=None,
                   help="XLA-compile the training step" + P)
    p.add_argument("--leaky-head", action="store_true",
                   help="WRONG on purpose: Conv3D 'same' time padding (reads frame t+1); "
                        "only for reproducing published numbers")
    p.add_argument("--init", default=None,
                   help="start from the weights of this model.keras (same architecture), e.g. to fine-tune")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute: mirrored = all local GPUs (or logical CPUs); multiworker = "
                        "MultiWorkerMirroredStrategy configured by TF_CONFIG; auto = multiworker if "
                        "TF_CONFIG is set, mirrored if several GPUs, else none (the default; see distribute.py)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also log losses and metrics for TensorBoard into DIR (tensorboard --logdir DIR)")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="stop after the first epoch that ends past this many minutes (resumable; default: none)")
    p.add_argument("--keep-epochs", action="store_true",
                   help="also save the network after every epoch, to OUT/epochs/model_NN.keras")
    p.add_argument("--verbose", type=int, default=None, help="Keras fit verbosity (default: 1 on a TTY, else 2)")
    return p.parse_args(argv)


def config_from_args(args) -> Config:
    if args.config and args.preset:
        raise InputError("--config and --preset both say where the config starts: give one")
    cfg = Config.load(args.config) if args.config else preset_config(args.preset or "seed")
    m = {"patch_size": args.patch_size, "precision": args.precision, "bn_momentum": args.bn_momentum}
    if args.filters:
        try:
            m["filters"] = tuple(int(f) for f in args.filters.split(","))
        except ValueError:
            raise InputError(f"--filters must be comma-separated integers, got {args.filters!r}") from None
        if len(m["filters"]) != len(cfg.model.kernel_sizes):
            raise InputError(f"--filters needs {len(cfg.model.kernel_sizes)} values, got {args.filters!r}")
    if args.input_skip is not None:
        m["input_skip"] = args.input_skip == "true"
    if args.leaky_head:
        m["causal"] = False
    t = {"seed": args.seed, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
         "batch_size": args.batch_size, "lr": args.lr, "seq_len": args.seq_len,
         "val_sequences": args.val_sequences, "bce_weight": args.bce_weight,
         "perceptual_weight": args.perceptual_weight, "gdl_weight": args.gdl_weight,
         "perceptual_weights": args.vgg_weights, "feedback_passes": args.feedback_passes,
         "context_frames": args.context_frames, "jit_compile": args.jit_compile,
         "mse_weight": args.mse_weight, "l1_weight": args.l1_weight,
         "lr_schedule": args.lr_schedule, "total_steps": args.total_steps,
         "warmup_steps": args.warmup_steps, "val_rollout_sequences": args.val_rollout_sequences,
         "init": args.init}
    if args.feedback_ramp is not None:
        t["feedback_ramp"] = args.feedback_ramp == "true"
    t["subpixel_jitter"] = args.subpixel_jitter
    cfg.model = dataclasses.replace(cfg.model, **{k: v for k, v in m.items() if v is not None})
    cfg.train = dataclasses.replace(cfg.train, **{k: v for k, v in t.items() if v is not None})
    tr = cfg.train
    if tr.seq_len < 2:
        raise InputError(f"--seq-len must be >= 2, got {tr.seq_len}")
    for flag, value in (("--batch-size", tr.batch_size), ("--epochs", tr.epochs),
                        ("--steps-per-epoch", tr.steps_per_epoch), ("--lr", tr.lr)):
        if not 0 < value < math.inf:
            raise InputError(f"{flag} must be positive and finite, got {value}")
    if tr.feedback_passes and tr.context_frames >= tr.seq_len - 1:
        raise InputError(f"--context-frames {tr.context_frames} leaves no frame to feed back "
                         f"in sequences of {tr.seq_len} frames")
    if not 0.0 <= tr.subpixel_jitter <= 1.0:
        raise InputError(f"--subpixel-jitter must be a width in [0, 1], got {tr.subpixel_jitter}")
    if tr.feedback_ramp and not tr.feedback_passes:
        raise InputError("--feedback-ramp true needs --feedback-passes >= 1 (it ramps the fed-back share), "
                         f"got {tr.feedback_passes}")
    weights = {"--bce-weight": tr.bce_weight, "--perceptual-weight": tr.perceptual_weight,
               "--gdl-weight": tr.gdl_weight, "--mse-weight": tr.mse_weight, "--l1-weight": tr.l1_weight}
    if not all(0 <= w < math.inf for w in weights.values()) or not any(weights.values()):
        raise InputError(f"loss weights must be finite, >= 0 and not all zero, got {weights}")
    if tr.total_steps < 0 or not 0 <= tr.warmup_steps < run_steps(tr):
        raise InputError(f"--total-steps must be >= 0 and --warmup-steps in [0, {run_steps(tr)}) "
                         f"(got {tr.total_steps}, {tr.warmup_steps})")
    if tr.val_rollout_sequences < 0:
        raise InputError(f"--val-rollout-sequences must be >= 0, got {tr.val_rollout_sequences}")
    if tr.val_rollout_sequences and tr.seq_len < tr.context_frames + 1:
        raise InputError(f"--val-rollout-sequences needs --seq-len > --context-frames ({tr.context_frames}), "
                         f"got {tr.seq_len}")
    mc = cfg.model
    if not 0 < mc.bn_momentum < 1:
        raise InputError(f"--bn-momentum must be in (0, 1), got {mc.bn_momentum}")
    if mc.patch_size < 1 or mc.frame_size % mc.patch_size:
        raise InputError(f"--patch-size must divide the {mc.frame_size}-pixel frames, got {mc.patch_size}")
    if min(mc.filters) < 1:
        raise InputError(f"--filters must be positive, got {mc.filters}")
    if tr.val_sequences < 1 or tr.context_frames < 1 or tr.feedback_passes < 0:
        raise InputError(f"--val-sequences and --context-frames must be >= 1 and --feedback-passes >= 0, got "
                         f"{tr.val_sequences}, {tr.context_frames}, {tr.feedback_passes}")
    if args.time_budget_min is not None and not args.time_budget_min >= 0:
        raise InputError(f"--time-budget-min must be >= 0, got {args.time_budget_min}")
    return cfg


# ------------------------------------------------------------------ training parts

def run_steps(tr) -> int:
    """The optimizer steps a run is sized to: `total_steps`, else epochs x steps per epoch."""
    return tr.total_steps or tr.epochs * tr.steps_per_epoch


class Forecaster(keras.Model):
    """The network wrapped for training; with feedback passes, training calls feed
    the network its own forecasts after `context_frames` true frames. With
    `ramp_steps`, scheduled sampling: each fed frame is the forecast with
    probability min(1, step / ramp_steps) and the true frame otherwise, `step`
    counting training calls (a weight of the wrapper, so a resumed run goes on
    from where it stopped)."""

    def __init__(self, net, feedback_passes: int, context_frames: int, ramp_steps: int = 0, seed: int = 0):
        super().__init__(name="forecaster")
        self.net = net
        self.feedback_passes, self.context_frames, self.ramp_steps = feedback_passes, context_frames, ramp_steps
        if ramp_steps and feedback_passes:
            self.steps_seen = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                              name="steps_seen", aggregation="only_first_replica")
            self.sampler = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        y = self.net(x, training=training)
        if not (training and self.feedback_passes):
            return y
        k = self.context_frames
        share = None
        if self.ramp_steps:
            self.steps_seen.assign_add(1.0)
            share = ops.minimum(self.steps_seen / float(self.ramp_steps), 1.0)
        for _ in range(self.feedback_passes):
            fed = ops.cast(y[:, k - 1:-1], x.dtype)
            if share is not None:
                shape = (ops.shape(fed)[0], ops.shape(fed)[1], 1, 1, 1)
                pick = keras.random.uniform(shape, seed=self.sampler) < share
                fed = ops.where(pick, fed, x[:, k:])
            y = self.net(ops.concatenate([x[:, :k], fed], axis=1), training=training)
        return y


def learning_rate(tr):
    """The optimizer's learning rate: a float for the plateau rule, a warm-up +
    cosine schedule (to 1% of `lr` at the run's last step) for "cosine"."""
    if tr.lr_schedule == "plateau":
        return tr.lr
    total = run_steps(tr)
    if tr.warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            0.0, total - tr.warmup_steps, alpha=0.01, warmup_target=tr.lr, warmup_steps=tr.warmup_steps)
    return keras.optimizers.schedules.CosineDecay(tr.lr, total, alpha=0.01)


def rollout_scores(net, frames, context: int) -> dict:
    """The 10->10 protocol's headline numbers on float frames (N, T, H, W, C):
    rollout MSE per frame (sum over pixels) and SSIM of the T - context frames
    forecast from `context` true ones, and next-frame SSIM."""
    import metrics
    from model import forecast

    horizon = frames.shape[1] - context
    nf, ro = forecast(net, frames, context, horizon)
    truth = frames[:, context:]
    return {"val_rollout_mse_frame": float(metrics.mse_frame(truth, ro).mean()),
            "val_rollout_ssim": float(metrics.ssim(truth, ro).mean()),
            "val_next_ssim": float(metrics.ssim(frames[:, 1:], nf).mean())}


class RolloutValidation(keras.callbacks.Callback):
    """Adds `rollout_scores` of `net` on the validation `frames` to each epoch's logs."""

    def __init__(self, net, frames, context: int):
        super().__init__()
        self.net, self.frames, self.context = net, frames, context

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(rollout_scores(self.net, self.frames, self.context))


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the network (not the training wrapper) to OUT/model.keras when val_loss
    improves, with its epoch's logs in OUT/best.json: written to a temporary file,
    then renamed, so model.keras is never half-written. A resumed run starts from
    the best.json it left."""

    def __init__(self, net, out: str):
        super().__init__()
        self.net, self.out = net, out
        self.path = os.path.join(out, "model.keras")
        self.best_path = os.path.join(out, "best.json")
        self.best = json.load(open(self.best_path))["val_loss"] if os.path.exists(self.best_path) else float("inf")

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get("val_loss")
        if v is None or not v < self.best:
            return
        self.best = float(v)
        runio.save_network(self.net, self.path)
        runio.write_json({"epoch": epoch + 1, **{k: float(x) for k, x in logs.items()}}, self.best_path)


class EpochSnapshots(keras.callbacks.Callback):
    """Saves the network after every epoch to OUT/epochs/model_NN.keras (NN: the
    epoch, from 1), for a choice by a score that training does not log (e.g.
    validation under several rasterisation conventions, benchmarks/conventions.py)."""

    def __init__(self, net, out: str):
        super().__init__()
        self.net, self.folder = net, os.path.join(out, "epochs")

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        runio.save_network(self.net, os.path.join(self.folder, f"model_{epoch + 1:02d}.keras"))


class TimeBudget(keras.callbacks.Callback):
    """Adds `elapsed_min` (training wall time, summed over resumed runs: the last
    value in OUT/log.csv is carried on) and the learning rate to the logs, and
    stops after the first epoch that ends past `minutes` of this process (None: never).
    The run's last epoch is no stop: nothing is left to resume, so the run is finished."""

    def __init__(self, minutes: float | None, out: str):
        super().__init__()
        self.minutes, self.start, self.hit = minutes, time.time(), False
        self.before = 0.0
        log = os.path.join(out, "log.csv")
        if os.path.exists(log) and os.path.getsize(log):
            prev = runio.read_log(log).get("elapsed_min")
            self.before = float(prev[-1]) if prev is not None and len(prev) else 0.0

    def on_epoch_end(self, epoch, logs=None):
        minutes = (time.time() - self.start) / 60
        if logs is not None:
            logs["elapsed_min"] = self.before + minutes
            logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate)))  # a schedule's value now
        last = epoch + 1 >= (self.params or {}).get("epochs", float("inf"))
        if self.minutes is not None and minutes > self.minutes and not last:
            self.hit = True
            self.model.stop_training = True


def make_callbacks(net, out: str, tr, time_budget_min: float | None, rollout_frames=None, tensorboard=None,
                   keep_epochs: bool = False):
    """The training callbacks in their order, and the TimeBudget among them."""
    budget = TimeBudget(time_budget_min, out)
    cbs = [
        # double_checkpoint: a kill while the weights file is being written leaves it
        # truncated; Keras then resumes from the copy of the epoch before.
        keras.callbacks.BackupAndRestore(os.path.join(out, "backup"), delete_checkpoint=False,
                                         double_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
        budget,
    ]
    if rollout_frames is not None:
        cbs.append(RolloutValidation(net, rollout_frames, tr.context_frames))
    if tr.lr_schedule == "plateau":
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                     patience=max(1, tr.patience // 2), min_lr=1e-5))
    cbs.append(BestCheckpoint(net, out))
    if keep_epochs:
        cbs.append(EpochSnapshots(net, out))
    if tr.lr_schedule == "plateau":  # a sized schedule runs to its end
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=tr.patience))
    cbs.append(keras.callbacks.CSVLogger(os.path.join(out, "log.csv"), append=True))
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(tensorboard))
    return cbs, budget


def run_state(out: str) -> str:
    """What `out` holds: "new" (nothing yet, or a run killed before its first
    epoch ended: an empty log and no model), "interrupted" (a resumable backup)
    or "finished". Reads only."""
    if os.path.isdir(os.path.join(out, "backup")):
        return "interrupted"
    log = os.path.join(out, "log.csv")
    logged = os.path.exists(log) and len(open(log).read().splitlines()) > 1  # a header and an epoch
    return "finished" if logged or os.path.exists(os.path.join(out, "model.keras")) else "new"


RUN_FILES = ("model.keras", "log.csv", "best.json", "config.json", "loss_curve.png", "training_curves.png")
REPLACED = ".replaced"  # a finished run being replaced waits here until the new one has finished


def prepare_out(out: str, overwrite: bool) -> bool:
    """Makes the run folder ready (after every check has passed); True when
    resuming an interrupted run. A finished run is replaced only with `overwrite`,
    and is moved aside to OUT/.replaced/ (not deleted) until the new run finishes."""
    state = run_state(out)
    if state == "interrupted":
        return True
    if state == "finished" and not overwrite:
        raise UserError(f"{out} already holds a run (model.keras or log.csv); "
                        "pass --overwrite to replace it or --out NEW_FOLDER")
    output_dir(out)
    aside = os.path.join(out, REPLACED)
    if state == "finished":
        shutil.rmtree(aside, ignore_errors=True)
        os.makedirs(aside)
    for f in RUN_FILES:
        if os.path.exists(os.path.join(out, f)):
            if state == "finished":
                os.replace(os.path.join(out, f), os.path.join(aside, f))
            else:
                os.remove(os.path.join(out, f))
    return False


def completed_epochs(out: str) -> int:
    """Epochs finished by the interrupted run in `out` (0 for a new run): the
    epoch `BackupAndRestore` resumes from, which is the one of its `.bkp` copy
    when the latest weights file was left truncated by a kill."""
    backup = os.path.join(out, "backup")
    path = os.path.join(backup, "training_metadata.json")
    try:
        import h5py

        h5py.File(os.path.join(backup, "latest.weights.h5"), "r").close()
    except OSError:
        if os.path.exists(path + ".bkp"):
            path += ".bkp"
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", 0))


def write_curves(out: str):
    import plots

    log = runio.read_log(os.path.join(out, "log.csv"))
    plots.loss_curve(log, os.path.join(out, "loss_curve.png"))
    plots.training_curves(log, os.path.join(out, "training_curves.png"))


def note_cpu_speed(cfg: Config) -> None:
    """Says what the reference model costs on a CPU when no GPU is found."""
    if keras.backend.backend() != "tensorflow" or cfg.preset != "seed" or cfg.model.patch_size != 1:
        return
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        tr = cfg.train
        est = tr.steps_per_epoch * tr.batch_size / SEED_PRESET_SEQ_PER_S_CPU / 60
        print(f"note: no GPU found; the seed preset trains at about {SEED_PRESET_SEQ_PER_S_CPU:g} "
              f"sequence/s on a 2-core CPU (~{est:.0f} min per epoch); --preset cpu is the CPU-sized "
              "model (space-to-depth patches + bf16). Carrying on.", flush=True)


def compiled_model(cfg: Config, strat, loss, init_net=None, init_path: str = ""):
    """(the network, its compiled training wrapper), built under `strat`; with
    `init_net`, its weights are copied in (fine-tuning)."""
    import numpy as np

    import metrics
    from model import build_model

    tr = cfg.train
    keras.utils.set_random_seed(tr.seed)
    with strat.scope():
        net = build_model(cfg.model)
        ramp = run_steps(tr) if tr.feedback_ramp else 0
        model = Forecaster(net, tr.feedback_passes, tr.context_frames, ramp, tr.seed)
        size, ch = cfg.model.frame_size, cfg.model.channels
        model(np.zeros((1, 2, size, size, ch), np.float32))  # build (BackupAndRestore needs it)
        if init_net is not None:
            try:
                net.set_weights(init_net.get_weights())
            except ValueError as e:
                raise UserError(f"--init {init_path}: not the same architecture as this config ({e})") from None
        jit = {"auto": "auto", "true": True, "false": False}[str(tr.jit_compile).lower()]
        model.compile(optimizer=keras.optimizers.Adam(learning_rate(tr)), loss=loss, jit_compile=jit,
                      metrics=["mae", metrics.PSNR(), metrics.SSIM(), metrics.PixelAccuracy()])
    return net, model


def data_streams(cfg: Config, train_digits, val_digits, global_batch: int, worker: int, start: int):
    """(training stream from step `start`, validation data, rollout-validation frames or None)."""
    import data

    tr = cfg.train
    val = data.validation_videos(val_digits, tr.val_sequences, tr.seq_len, tr.num_digits, tr.seed)
    if keras.backend.backend() == "tensorflow":
        train_ds = data.train_dataset(train_digits, global_batch, tr.seq_len, tr.num_digits, tr.seed,
                                      worker, start, jitter=tr.subpixel_jitter)
        val_ds = data.fixed_dataset(val, global_batch)
    else:  # no tf.data: a NumPy stream and arrays (strategies are TensorFlow's)
        train_ds = data.train_batches(train_digits, global_batch, tr.seq_len, tr.num_digits, tr.seed,
                                      worker, start, jitter=tr.subpixel_jitter)
        v = data.to_float(val)
        val_ds = (v[:, :-1], v[:, 1:])
    rollout = data.to_float(val[:tr.val_rollout_sequences]) if tr.val_rollout_sequences else None
    return train_ds, val_ds, rollout


def train(cfg: Config, out: str, mnist=None, overwrite=False, time_budget_min=None, verbose=None,
          init=None, strategy="none", tensorboard=None, keep_epochs=False):
    """Trains `cfg` into the run folder `out`; returns the Keras History.

    Every check (data, checkpoint to start from and its architecture, output
    folder) runs before anything in `out` is removed or written."""
    import data
    import distribute
    import losses
    from model import load_predictor

    tr = cfg.train
    note_cpu_speed(cfg)
    # The strategy first: MultiWorkerMirroredStrategy must exist before any other
    # TensorFlow work (the perceptual term builds VGG16).
    strat = strategy if not isinstance(strategy, str) else distribute.make_strategy(strategy)
    loss = losses.CompositeLoss(tr.bce_weight, tr.perceptual_weight, tr.gdl_weight,
                                perceptual_weights=tr.perceptual_weights,
                                perceptual_layer=tr.perceptual_layer,
                                mse_weight=tr.mse_weight, l1_weight=tr.l1_weight)
    train_digits = data.load_mnist_digits(mnist, "train")
    val_digits = data.load_mnist_digits(mnist, "val")
    worker, _ = distribute.worker_info(strat)
    out = distribute.chief_out(out, strat)
    output_dir(out, create=False)
    resuming = run_state(out) == "interrupted"
    init_net = load_predictor(init) if init and not resuming else None
    net, model = compiled_model(cfg, strat, loss, init_net, init)
    prepare_out(out, overwrite)
    cfg.save(os.path.join(out, "config.json"))
    global_batch = distribute.global_batch(strat, tr.batch_size)
    start = completed_epochs(out) * tr.steps_per_epoch  # the data stream goes on where it stopped
    train_ds, val_ds, rollout_frames = data_streams(cfg, train_digits, val_digits, global_batch, worker, start)
    callbacks, budget = make_callbacks(net, out, tr, time_budget_min, rollout_frames, tensorboard, keep_epochs)
    if resuming:
        print(f"resuming the interrupted run in {out} (data stream from step {start})", flush=True)
    t0 = time.time()
    history = model.fit(train_ds, epochs=-(-run_steps(tr) // tr.steps_per_epoch) if tr.total_steps else tr.epochs,
                        steps_per_epoch=tr.steps_per_epoch, validation_data=val_ds,
                        shuffle=False,  # the stream is drawn at random already, step by step
                        validation_batch_size=None if keras.backend.backend() == "tensorflow" else global_batch,
                        callbacks=callbacks, verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose)
    finish_run(out, history, budget, time.time() - t0, tr.steps_per_epoch * global_batch)
    return history


def finish_run(out: str, history, budget, seconds: float, seqs_per_epoch: int) -> None:
    """Drops the backup of a run that ended (epochs done or early stop), draws the
    curves, and says what was trained."""
    if not budget.hit:  # nothing left to resume; a run it replaced can go
        shutil.rmtree(os.path.join(out, "backup"), ignore_errors=True)
        shutil.rmtree(os.path.join(out, REPLACED), ignore_errors=True)
    if os.path.exists(os.path.join(out, "log.csv")):
        write_curves(out)
    if not os.path.exists(os.path.join(out, "model.keras")):
        raise UserError("training produced no checkpoint (validation loss never finite)")
    n = len(history.epoch)
    took = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    print(f"trained {n} epoch{'s' if n != 1 else ''} ({n * seqs_per_epoch} sequences) in {took}; "
          f"best model: {os.path.join(out, 'model.keras')}"
          + (" (time budget reached: run again to resume)" if budget.hit else ""), flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)

    def run():
        cfg = config_from_args(args)
        out = args.out or os.path.join("runs", cfg.preset)
        train(cfg, out, mnist=args.mnist, overwrite=args.overwrite,
              time_budget_min=args.time_budget_min, verbose=args.verbose, init=cfg.train.init, tensorboard=args.tensorboard,
              strategy=args.strategy, keep_epochs=args.keep_epochs)
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
