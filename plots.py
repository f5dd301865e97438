"""Every figure and GIF the project draws, each written to a temporary file and
renamed, so a kill never leaves one half-written. Matplotlib runs headless (Agg).
JSON reports and training logs are read and written by `runio`."""

from __future__ import annotations

import os

import numpy as np

from runio import read_log


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Saves and closes `fig` at `path` (written then renamed); returns `path`."""
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    os.replace(tmp, path)
    return path


def loss_curve(log: dict, path):
    """Training and validation loss per epoch."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ep = log["epoch"] + 1
    ax.plot(ep, log["loss"], label="train")
    if "val_loss" in log:
        ax.plot(ep, log["val_loss"], label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="Composite loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def training_curves(log: dict, path):
    """Loss, MAE, PSNR, SSIM (train and validation), learning rate and pixel accuracy."""
    plt = pyplot()
    panels = [("loss", "loss"), ("mae", "MAE"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM"),
              ("learning_rate", "learning rate"), ("pixel_acc", "pixel accuracy @0.5")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    ep = log["epoch"] + 1
    for ax, (key, label) in zip(axes.ravel(), panels):
        if key in log:
            ax.plot(ep, log[key], label="train" if key != "learning_rate" else "lr")
        if f"val_{key}" in log:
            ax.plot(ep, log[f"val_{key}"], label="validation")
        if key == "learning_rate" and key in log:
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle("Training curves (validation = fixed validation digits)")
    fig.tight_layout()
    return save_figure(fig, path)


def comparison_strip(rows: list, labels: list, path, title: str = "", first_index: int = 0,
                     col_titles: list | None = None):
    """Rows of frames (each (T, H, W) or (T, H, W, 1) in [0, 1]) as an image grid;
    columns are titled t=first_index.. unless `col_titles` names them."""
    plt = pyplot()
    rows = [np.asarray(r).reshape(len(r), *np.asarray(r).shape[1:3]) for r in rows]
    t = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), t, figsize=(1.1 * t, 1.2 * len(rows)), squeeze=False)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        for j in range(t):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(r):
                ax.imshow(r[j], cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
            if i == 0:
                ax.set_title(col_titles[j] if col_titles else f"t={first_index + j}", fontsize=7)
        axes[i, 0].set_ylabel(lab, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def write_gif(frames, path, fps: int = 4):
    """uint8 or [0, 1] float frames (T, H, W[, 1|3]) -> a looping GIF."""
    import imageio.v2 as imageio

    f = np.asarray(frames)
    if f.dtype != np.uint8:
        f = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    if f.ndim == 4 and f.shape[-1] == 1:
        f = f[..., 0]
    tmp = f"{path}.tmp{os.getpid()}.gif"
    imageio.mimsave(tmp, list(f), format="GIF", duration=1000.0 / fps, loop=0)
    os.replace(tmp, path)
    return path


def side_by_side(panels, gap: int = 2, scale: int = 2):
    """Joins videos (T, H, W[,1]) in [0, 1] left to right with a white gap, upscaled."""
    vids = [np.asarray(p, np.float32).reshape(len(p), *np.asarray(p).shape[1:3]) for p in panels]
    t, h = len(vids[0]), vids[0].shape[1]
    sep = np.ones((t, h, gap), np.float32)
    out = vids[0]
    for v in vids[1:]:
        out = np.concatenate([out, sep, v], axis=2)
    return np.kron(out, np.ones((1, scale, scale), np.float32))


def per_step_curves(steps, curves: dict, path, title: str, ylabel_by_metric: dict | None = None):
    """One panel per metric; curves[metric][name] = values per step."""
    plt = pyplot()
    metrics = list(curves)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for name, vals in curves[m].items():
            ax.plot(steps, vals, marker="o", ms=3, label=name)
        ax.set(xlabel="frame index" if "next" in title else "forecast step",
               ylabel=(ylabel_by_metric or {}).get(m, m), title=m)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def anomaly_scores(path, scores, threshold, labels=None, title="", baseline=None):
    """Frame scores over time with the threshold and, shaded, the labelled anomalous frames."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    t = np.arange(len(scores))
    if labels is not None:
        lab = np.asarray(labels[:len(scores)], bool)
        ax.fill_between(t[:len(lab)], 0, 1, where=lab, color="red", alpha=0.15,
                        transform=ax.get_xaxis_transform(), label="true anomaly")
    ax.plot(t, scores, color="C0", label="frame score")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set(xlabel="frame", ylabel="score", title=title)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def roc_figure(scores: dict, labels, path, title: str = "Frame-level ROC (pooled)"):
    """ROC curves of several scorers on the same frames: {label: (N,) scores}, labels (N,) 0/1."""
    from anomaly import scoring

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for name, sc in scores.items():
        fpr, tpr, _ = scoring.roc_curve(sc, labels)
        ax.plot(fpr, tpr, label=f"{name} (AUC {scoring.roc_auc(sc, labels):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def learning_curves(runs: dict, references: list, path, fine_tunes=()):
    """Validation 10->10 MSE per frame and SSIM, and next-frame SSIM, against
    training sequences seen (log x), and 10->10 MSE against wall hours.

    Args:
        runs: {label: rows}, each row a dict with sequences, hours,
            val_rollout_mse_frame, val_rollout_ssim, val_next_ssim.
        references: (sequences, rollout MSE per frame, rollout SSIM, source)
            points, starred on the two rollout panels.
        fine_tunes: labels of runs that continue another one: open markers, dashed.
    """
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [(axes[0, 0], "sequences", "val_rollout_mse_frame", "10->10 MSE per frame", 1),
              (axes[0, 1], "sequences", "val_rollout_ssim", "10->10 SSIM", 2),
              (axes[1, 0], "sequences", "val_next_ssim", "next-frame SSIM", None),
              (axes[1, 1], "hours", "val_rollout_mse_frame", "10->10 MSE per frame", None)]
    # tab20's dark shades first, then its light ones: up to 20 runs, each its own colour
    # (the default cycle repeats after 10 and would give two runs one colour).
    palette = plt.get_cmap("tab20")
    colours = {label: palette((2 * i) % 20 + (2 * i) // 20 % 2) for i, label in enumerate(runs)}
    for ax, x, y, ylabel, ref in panels:
        for label, rows in runs.items():
            style = {"marker": "o", "markerfacecolor": "none", "linestyle": "--"} if label in fine_tunes \
                else {"marker": "."}
            ax.plot([r[x] for r in rows], [r[y] for r in rows], label=label, color=colours[label], **style)
        if ref is not None:
            for point in references:
                ax.scatter([point[0]], [point[ref]], marker="*", s=120, color="black", zorder=3)
                ax.annotate(point[3], (point[0], point[ref]), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
        if x == "sequences":
            ax.set_xscale("log")
        ax.set_xlabel("training sequences seen" if x == "sequences" else "wall hours (training + validation)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    # below the panels, where it hides no curve
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=2, fontsize=8)
    fig.suptitle("Validation digits 8000-8499 (each run's own first validation sequences; dashed, open: "
                 "fine-tunes); stars: published ConvLSTM, official test file", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None) -> int:
    """`python plots.py RUN_DIR`: redraw a run's loss and training curves from its log.csv."""
    from cli import CliParser, UserError, run_cli

    p = CliParser("Redraws a run's loss_curve.png and training_curves.png from its log.csv.", "python plots.py")
    p.add_argument("run_dir", help="a run folder of train.py (holds log.csv)")
    args = p.parse_args(argv)

    def run():
        log_path = os.path.join(args.run_dir, "log.csv")
        try:
            log = read_log(log_path)
        except (OSError, KeyError, ValueError) as e:  # missing, unreadable or not a CSV log
            raise UserError(f"cannot read {log_path} ({e})") from None
        for path in (loss_curve(log, os.path.join(args.run_dir, "loss_curve.png")),
                     training_curves(log, os.path.join(args.run_dir, "training_curves.png"))):
            print("wrote", path)
    return run_cli(run)


if __name__ == "__main__":
    raise SystemExit(main())
