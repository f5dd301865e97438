"""Dataset EDA: what the model must learn, in figures.

    python eda.py --mnist ../shared/data/mnist            # generated sequences (training digits)
    python eda.py --data mnist_test_seq.npy               # the official test file

Writes to --out (default runs/eda/; the shipped figures: --out results/eda --overwrite):
sample_sequences.png,
intensity_over_time.png, intensity_per_frame.png, pixel_histogram.png,
mean_std_frames.png, motion.png and stats.json.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import plots
import runio
from cli import CliParser, InputError, entry, output_dir, seed_arg


# ----------------------------------------------------------------- statistics

def intensity_over_time(videos: np.ndarray) -> dict:
    """Per frame index: mean and std across sequences of each frame's mean intensity.

    videos: uint8 (N, T, H, W) -> {"mean": (T,), "std": (T,)} in [0, 1] units.
    """
    per = videos.reshape(*videos.shape[:2], -1).mean(axis=-1) / 255.0  # (N, T)
    return {"mean": per.mean(axis=0), "std": per.std(axis=0), "per_sequence": per}


def pixel_histogram(videos: np.ndarray) -> dict:
    """Counts of each of the 256 intensity values: all pixels and non-zero pixels."""
    counts = np.bincount(videos.ravel(), minlength=256)
    nonzero = counts.copy()
    nonzero[0] = 0
    return {"all": counts, "nonzero": nonzero, "fraction_zero": counts[0] / counts.sum()}


def mean_std_frames(videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean frame and the std frame over all sequences and frames, in [0, 1]."""
    f = videos.reshape(-1, *videos.shape[2:]).astype(np.float64) / 255.0
    return f.mean(axis=0), f.std(axis=0)


def motion_from_trajectories(traj: np.ndarray) -> dict:
    """Speed (px/frame) and direction (radians) of every digit step.

    traj: (N, D, T, 2) top-left (row, col) positions from the generator.
    """
    step = np.diff(traj.astype(np.float64), axis=2)  # (N, D, T-1, 2)
    speed = np.hypot(step[..., 0], step[..., 1]).ravel()
    direction = np.arctan2(-step[..., 0], step[..., 1]).ravel()  # up = +90 degrees
    return {"speed": speed, "direction": direction}


def digit_overlap(traj: np.ndarray, which: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Whether the strokes of the first two digits share a pixel, per (sequence, frame).

    Returns bool (N, T).
    """
    n, d, t, _ = traj.shape
    out = np.zeros((n, t), bool)
    if d < 2:
        return out
    for i in range(n):
        a, b = digits[which[i, 0]] > 0, digits[which[i, 1]] > 0
        for j in range(t):
            dr, dc = traj[i, 1, j] - traj[i, 0, j]
            if abs(dr) >= 28 or abs(dc) >= 28:
                continue
            ra = slice(max(0, dr), min(28, 28 + dr))
            ca = slice(max(0, dc), min(28, 28 + dc))
            rb = slice(max(0, -dr), min(28, 28 - dr))
            cb = slice(max(0, -dc), min(28, 28 - dc))
            out[i, j] = bool(np.any(a[ra, ca] & b[rb, cb]))
    return out


def motion_from_frames(videos: np.ndarray, max_sequences: int = 200) -> dict:
    """Estimates motion for data without trajectories (the official file):
    Farneback optical flow at bright pixels, and 'overlap' as frames whose bright
    pixels form fewer connected blobs than the sequence's usual count."""
    import cv2

    speeds, dirs, merged = [], [], []
    for v in videos[:max_sequences]:
        blobs = np.array([cv2.connectedComponents((f > 64).astype(np.uint8))[0] - 1 for f in v])
        usual = np.median(blobs)
        merged.append(blobs < usual)
        for a, b in zip(v[:-1], v[1:]):
            flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            m = a > 64
            if m.any():
                fx, fy = flow[..., 0][m], flow[..., 1][m]
                speeds.append(float(np.median(np.hypot(fx, fy))))
                dirs.append(float(np.arctan2(-np.median(fy), np.median(fx))))
    return {"speed": np.array(speeds), "direction": np.array(dirs), "overlap": np.array(merged)}


# -------------------------------------------------------------------- figures

def samples_figure(videos, label, n_show=6):
    """The first `n_show` sequences, one row each."""
    n_show = min(n_show, len(videos))
    fig, axes = plots.pyplot().subplots(n_show, videos.shape[1], figsize=(0.9 * videos.shape[1], 0.95 * n_show),
                                squeeze=False)
    for i in range(n_show):
        for j in range(videos.shape[1]):
            axes[i, j].imshow(videos[i, j], cmap="gray", vmin=0, vmax=255)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(f"t={j}", fontsize=7)
        axes[i, 0].set_ylabel(f"seq {i}", fontsize=7)
    fig.suptitle(f"Sample sequences ({label})")
    return fig


def intensity_figures(videos, label):
    """(mean intensity over time, its distribution per frame index)."""
    plt = plots.pyplot()
    it = intensity_over_time(videos)
    t = np.arange(videos.shape[1])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(t, it["mean"], color="C0", label="mean over sequences")
    ax.fill_between(t, it["mean"] - it["std"], it["mean"] + it["std"], alpha=0.3, label="±1 std")
    ax.set(xlabel="frame index", ylabel="mean pixel intensity (0-1)",
           title=f"Average intensity over time ({label})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig2, ax = plt.subplots(figsize=(8, 3.5))
    ax.boxplot([it["per_sequence"][:, j] for j in t], positions=t, showfliers=False)
    ax.set(xlabel="frame index", ylabel="frame mean intensity (0-1)",
           title=f"Per-frame-index intensity distribution across sequences ({label})")
    ax.grid(alpha=0.3)
    return fig, fig2


def pixels_figure(videos, label):
    h = pixel_histogram(videos)
    fig, ax = plots.pyplot().subplots(figsize=(6, 3.5))
    ax.bar(np.arange(256), h["all"], width=1.0, alpha=0.5, label="all pixels")
    ax.bar(np.arange(256), h["nonzero"], width=1.0, alpha=0.7, label="non-zero pixels")
    ax.set_yscale("log")
    ax.set(xlabel="pixel value (0-255)", ylabel="count (log)",
           title=f"Pixel intensities: {100 * h['fraction_zero']:.1f}% are exactly 0 ({label})")
    ax.legend()
    return fig


def mean_std_figure(videos, label):
    mean_f, std_f = mean_std_frames(videos)
    fig, axes = plots.pyplot().subplots(1, 2, figsize=(9, 3.8))
    for ax, img, name in zip(axes, (mean_f, std_f), ("mean frame", "std frame")):
        im = ax.imshow(img, cmap="magma")
        ax.set(title=name, xlabel="column (px)", ylabel="row (px)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"Where digits spend their time ({label})")
    fig.tight_layout()
    return fig


def motion_figure(motion, overlap, label):
    """Digit speeds, directions, and how often the digits overlap per frame index."""
    fig = plots.pyplot().figure(figsize=(12, 3.6))
    ax1 = fig.add_subplot(1, 3, 1)
    ax1.hist(motion["speed"], bins=40, color="C2")
    ax1.set(xlabel="speed (px / frame)", ylabel="digit steps", title="Digit speed")
    ax2 = fig.add_subplot(1, 3, 2, projection="polar")
    counts, edges = np.histogram(motion["direction"], bins=24, range=(-np.pi, np.pi))
    ax2.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", color="C1")
    ax2.set_title("Direction of motion")
    ax3 = fig.add_subplot(1, 3, 3)
    ax3.plot(np.arange(overlap.shape[1]), 100 * overlap.mean(axis=0), marker="o", ms=3)
    ax3.set(xlabel="frame index", ylabel="% of sequences", title="Digits overlapping", ylim=(0, 100))
    ax3.grid(alpha=0.3)
    fig.suptitle(f"Motion ({label})")
    fig.tight_layout()
    return fig


def figures(videos, motion, overlap, out, label, n_show=6):
    """Draws every EDA figure into `out`; returns their paths."""
    over_time, per_frame = intensity_figures(videos, label)
    named = {"sample_sequences.png": samples_figure(videos, label, n_show),
             "intensity_over_time.png": over_time, "intensity_per_frame.png": per_frame,
             "pixel_histogram.png": pixels_figure(videos, label),
             "mean_std_frames.png": mean_std_figure(videos, label),
             "motion.png": motion_figure(motion, overlap, label)}
    return [plots.save_figure(fig, os.path.join(out, name)) for name, fig in named.items()]


def parse_args(argv=None):
    p = CliParser(__doc__, "python eda.py")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--mnist", default=None, help="MNIST source for generated sequences")
    src.add_argument("--data", default=None, help="the official mnist_test_seq.npy")
    p.add_argument("--split", default="train", choices=["train", "val", "test"],
                   help="digits to generate from (default: %(default)s)")
    p.add_argument("--sequences", type=int, default=1000, help="sequences to look at, >= 1 (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=0, help="generator seed (default: %(default)s)")
    p.add_argument("--out", default=os.path.join("runs", "eda"), help="output folder (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the figures of an earlier EDA in --out")
    return p.parse_args(argv)


def load_videos(args):
    """(videos, motion, overlap, label, how) of the chosen source."""
    import data

    if args.data:
        videos = np.asarray(data.open_moving_mnist_npy(args.data)[:args.sequences])
        est = motion_from_frames(videos)
        return videos, est, est["overlap"], f"official file, {len(videos)} sequences", \
            "estimated from frames (optical flow; merged blobs)"
    digits = data.load_mnist_digits(args.mnist, args.split)
    videos, traj, which = data.generate_moving_mnist(digits, args.sequences, seed=[args.seed, 4],
                                                     return_trajectories=True)
    return videos, motion_from_trajectories(traj), digit_overlap(traj, which, digits), \
        f"generated, {args.split} digits, {len(videos)} sequences", "from the generator's trajectories"


def eda(args) -> None:
    if args.sequences < 1:
        raise InputError(f"--sequences must be >= 1, got {args.sequences}")
    output_dir(args.out, create=False)
    if os.path.exists(os.path.join(args.out, "stats.json")) and not args.overwrite:
        raise InputError(f"{args.out} holds an earlier EDA; pass --overwrite to replace it")
    videos, motion, overlap, label, how = load_videos(args)
    output_dir(args.out)
    paths = figures(videos, motion, overlap, args.out, label)
    it, h = intensity_over_time(videos), pixel_histogram(videos)
    stats = {"data": label, "seed": args.seed, "motion": how,
             "mean_intensity": float(it["mean"].mean()), "fraction_zero_pixels": float(h["fraction_zero"]),
             "speed_px_per_frame_median": float(np.median(motion["speed"])),
             "overlap_fraction_of_frames": float(overlap.mean())}
    runio.write_json(stats, os.path.join(args.out, "stats.json"))
    print(json.dumps(stats, indent=2))
    print("wrote " + ", ".join(os.path.basename(p) for p in paths))


main = entry(parse_args, eda)


if __name__ == "__main__":
    sys.exit(main())
