"""Forecast the continuation of your own clip.

    python predict.py my_clip.gif --frames 10 --out predictions/

Input: a GIF, a video file OpenCV can read (MP4, AVI, ...), or a .npy array
(T, H, W), (T, H, W, 1) or (T, H, W, 3), uint8 or float in [0, 1]. Frames are
converted to grayscale, resized to the model's 64x64 and scaled to [0, 1]. Output:
NAME_forecast.gif (input frames, then the forecast, beside nothing: the forecast
frames carry a white border) and NAME_forecast.npy (uint8 (T + frames, 64, 64)).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import numpy as np  # noqa: E402

from cli import CliParser, InputError, UserError, entry, first_line, output_dir  # noqa: E402
from views import VIEWS, over_views  # noqa: E402

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def _gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W[, C]) -> (T, H, W) float32 in the input's scale."""
    f = np.asarray(frames, np.float32)
    if f.ndim == 4 and f.shape[-1] == 1:
        f = f[..., 0]
    elif f.ndim == 4 and f.shape[-1] in (3, 4):
        f = f[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    elif f.ndim != 3:
        raise UserError(f"frames must be (T, H, W), (T, H, W, 1) or (T, H, W, 3); got shape {frames.shape}")
    return f


def read_clip(path: str) -> np.ndarray:
    """A clip as float32 (T, H, W) in [0, 1] at its own resolution."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
        if not np.issubdtype(arr.dtype, np.number):
            raise UserError(f"{path}: expected a numeric array, got {arr.dtype}")
        f = _gray(arr)
        if not np.all(np.isfinite(f)):
            raise UserError(f"{path}: contains NaN or infinite values")
        if arr.dtype == np.uint8:
            return f / 255.0
        if f.min() < 0 or f.max() > 1:
            raise UserError(f"{path}: float frames must lie in [0, 1] (got {f.min():.3g}..{f.max():.3g}); "
                            "pass uint8 for 0..255")
        return f
    if ext == ".gif":
        import imageio.v2 as imageio

        try:
            frames = [np.asarray(fr) for fr in imageio.mimread(path, memtest=False)]
        except (OSError, ValueError, EOFError, SyntaxError) as e:  # Pillow's GIF parser raises SyntaxError
            raise UserError(f"{path}: cannot read GIF ({first_line(e)})") from None
        if not frames:
            raise UserError(f"{path}: the GIF holds no frames")
        frames = np.stack(frames)
        return _gray(frames) / 255.0
    if ext in VIDEO_EXTS:
        import cv2

        cap = cv2.VideoCapture(path)
        frames = []
        while True:
            ok, fr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2GRAY))
        cap.release()
        if not frames:
            raise UserError(f"{path}: no frames could be decoded (corrupt or unsupported video)")
        return np.stack(frames).astype(np.float32) / 255.0
    raise UserError(f"{path}: unsupported file type {ext!r}; use .gif, .npy or a video ({', '.join(VIDEO_EXTS)})")


def to_model_frames(clip: np.ndarray, size: int = 64) -> np.ndarray:
    """(T, H, W) in [0, 1] -> float32 (T, size, size, 1), area-resized."""
    import cv2

    if clip.shape[1:] == (size, size):
        out = clip
    else:
        out = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in clip])
    return np.clip(out, 0.0, 1.0).astype(np.float32)[..., None]


def parse_args(argv=None):
    p = CliParser(__doc__, "python predict.py")
    p.add_argument("clip", help="a .gif, .npy or video file")
    p.add_argument("--checkpoint", default="results/model.keras", help="the predictor (default: %(default)s)")
    p.add_argument("--frames", type=int, default=10, help="frames to forecast, >= 1 (default: %(default)s)")
    p.add_argument("--context", type=int, default=None,
                   help="use only the last N >= 2 input frames (default: all)")
    p.add_argument("--views", default="none", choices=sorted(VIEWS),
                   help="the mean of the forecasts of the clip seen transposed (transpose), flipped (flips) "
                        "or both (dihedral): lower error, blurrier (default: %(default)s)")
    p.add_argument("--out", default="predictions", help="output folder (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier forecast of the same clip")
    return p.parse_args(argv)


def output_paths(args) -> tuple[str, str]:
    """(GIF, .npy) of the forecast: named after the whole file name, so clip.gif
    and clip.npy do not overwrite each other's forecasts."""
    name = os.path.basename(args.clip).replace(".", "_")
    return (os.path.join(args.out, f"{name}_forecast.gif"), os.path.join(args.out, f"{name}_forecast.npy"))


def check_args(args) -> None:
    """Every flag and the output folder, before any work."""
    if args.frames < 1:
        raise InputError(f"--frames must be >= 1, got {args.frames}")
    if args.context is not None and args.context < 2:
        raise InputError(f"--context must be >= 2 (two frames to see motion), got {args.context}")
    output_dir(args.out, create=False)
    existing = [p for p in output_paths(args) if os.path.exists(p)]
    if existing and not args.overwrite:
        raise InputError(f"{existing[0]} exists (an earlier forecast of this clip); pass --overwrite to replace it")


# Moving MNIST as the model saw it in training (results/eda/stats.json: 1,000
# generated sequences): mean intensity 0.048, 93% of pixels exactly black.
TRAINING_MEAN, TRAINING_DARK = 0.048, 0.93


def input_warnings(clip: np.ndarray, frames: np.ndarray) -> list[str]:
    """One line per way the clip (T, H, W) in [0, 1], resized to the model's
    `frames` (T, S, S, 1), is outside what the model knows."""
    out = []
    h, w = clip.shape[1:3]
    if h != w:
        out.append(f"note: the {w}x{h} frames were squeezed to {frames.shape[2]}x{frames.shape[1]} "
                   "(aspect ratio changed)")
    dark = float(np.mean(frames < 0.05))
    mean = float(frames.mean())
    if dark < 0.6 or mean > 3 * TRAINING_MEAN + 0.05:
        out.append(f"warning: this clip is unlike the training data (white digits on black: {TRAINING_DARK:.0%} "
                   f"dark pixels, mean intensity {TRAINING_MEAN:.2f}; this clip: {dark:.0%} dark, mean {mean:.2f}); "
                   "expect a blurred forecast, not a meaningful one")
    return out


def predict(args) -> None:
    check_args(args)
    clip = read_clip(args.clip)  # before Keras loads: a bad clip fails in a blink
    if len(clip) < 2:
        raise UserError(f"{args.clip}: {len(clip)} frame(s); need at least 2 to see motion")
    import plots
    from model import load_predictor, rollout

    if args.context:
        clip = clip[-args.context:]
    net = load_predictor(args.checkpoint)
    frames = to_model_frames(clip, net.input_shape[2])
    for line in input_warnings(clip, frames):
        print(line, file=sys.stderr)
    forecast = over_views(lambda f: rollout(net, f, args.frames), frames[None], args.views)[0]
    full = np.concatenate([frames, forecast])[..., 0]
    marked = full.copy()
    marked[len(frames):, [0, -1], :] = 1.0   # white border marks forecast frames
    marked[len(frames):, :, [0, -1]] = 1.0
    gif_path, npy = output_paths(args)
    output_dir(args.out)
    gif = plots.write_gif(plots.side_by_side([marked]), gif_path)
    tmp = npy + ".tmp.npy"
    np.save(tmp, np.clip(np.rint(full * 255), 0, 255).astype(np.uint8))
    os.replace(tmp, npy)
    print(f"{len(frames)} input + {args.frames} forecast frames -> {gif}, {npy}")


main = entry(parse_args, predict)


if __name__ == "__main__":
    sys.exit(main())
