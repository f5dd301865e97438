"""Real footage for the detector's benchmark: OpenCV's sample recording of
pedestrians (vtest.avi: 768x576, 10 frames/s, 795 frames, outdoors, people walk
in every direction), cut into normal clips and anomalies made from its own frames.

    python -m anomaly.footage --out data/real

The recording comes from Debian's `opencv-doc` package, fetched once with
`apt-get download` and unpacked with `dpkg -x` into --cache (nothing is
installed; the video is never committed). `--video PATH` uses a copy you have.

The protocol, by source frame (no frame of one part is used by another):
- train/ (frames 0-399): four normal clips of 100 frames, to train on;
- val/ (400-599): held-out normal clips (calibration and choices) and anomalies
  made from these frames;
- test/ (600-794): normal clips, the same clips mirrored left-right (still
  normal: a detector must not learn which way this street's people walk), and
  anomalies made from these frames.
Anomalies start after `LEAD` normal frames of the clip and last to its end:
- speedup: from the onset on, every `SKIP`th frame (everyone moves 3x faster:
  a skip-frame pseudo-anomaly, as in Astrid et al. 2021);
- stop: from the onset on, one frame held, with sensor-like noise
  (Gaussian, sigma 2 grey levels) so the picture is not perfectly still: the crowd stops.
Clips are written at half resolution (384x288, 10 frames/s) as NAME_NN.mp4
with NAME_NN.labels.txt (one 0/1 per frame); manifest.json says which source
frames and transformation each clip holds.

`--order` cuts the same parts from the recording taken in another order, a
second and third protocol on the same footage (`ORDERS`): "late-first" trains
on the last 40 s (frames 395-794), calibrates on the 20 s before them (195-394)
and tests on the first 20 s (0-194), each played forward; "backward" plays the
whole recording backwards (train 794-395, val 394-195, test 194-0). The
manifest's source frames are always the recording's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from cli import CliParser, InputError, UserError, output_dir, run_cli, seed_arg

PACKAGE = "opencv-doc"
VIDEO_IN_PACKAGE = "usr/share/doc/opencv-doc/examples/data/vtest.avi"
FPS = 10.0
LEAD = 30  # normal frames before an anomaly's onset
SKIP = 3  # the speed-up factor
ANOMALY_FRAMES = 40  # frames of a clip from its onset on
SPLITS = {"train": (0, 400), "val": (400, 600), "test": (600, 795)}
ORDERS = ("forward", "late-first", "backward")


def source_order(n: int, order: str) -> np.ndarray:
    """(n,) the recording's frame index at each position of the protocol's
    frame sequence: its parts in SPLITS are cut from this sequence."""
    if order == "forward":
        return np.arange(n)
    if order == "backward":
        return np.arange(n)[::-1].copy()
    if order == "late-first":  # each part's span, counted from the end, played forward
        ends = np.cumsum([0] + [hi - lo for lo, hi in SPLITS.values()])
        return np.concatenate([np.arange(n - b, n - a) for a, b in zip(ends[:-1], ends[1:])])
    raise InputError(f"order {order!r}: expected one of {', '.join(ORDERS)}")


def fetch_vtest(cache: str) -> str:
    """The path of vtest.avi in `cache`, fetched from Debian's package on first use.

    Raises:
        UserError saying what failed and naming --video, if the package cannot be had.
    """
    path = os.path.join(cache, "vtest.avi")
    if os.path.isfile(path):
        return path
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise UserError("cannot fetch vtest.avi: apt-get and dpkg are needed (a Debian system); "
                        "pass --video with a copy of it")
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        got = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True)
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if got.returncode or not debs:
            why = (got.stderr.strip().splitlines() or ["no .deb file"])[-1]
            raise UserError(f"cannot fetch vtest.avi: apt-get download {PACKAGE} failed ({why}); "
                            "run 'apt-get update' first, or pass --video with a copy of it")
        unpacked = os.path.join(tmp, "x")
        subprocess.run(["dpkg", "-x", os.path.join(tmp, debs[0]), unpacked], check=True)
        src = os.path.join(unpacked, VIDEO_IN_PACKAGE)
        if not os.path.isfile(src):
            raise UserError(f"{debs[0]} holds no {VIDEO_IN_PACKAGE}; pass --video with a copy of vtest.avi")
        os.replace(src, path)
    return path


def speedup(frames: np.ndarray, start: int, lead: int = LEAD, skip: int = SKIP, length: int = ANOMALY_FRAMES):
    """(clip, labels, source frame indices): `lead` frames from `start` at their
    own rate, then every `skip`th frame for `length` frames."""
    idx = np.r_[np.arange(start, start + lead), start + lead + skip * np.arange(length)]
    return frames[idx], np.r_[np.zeros(lead), np.ones(length)].astype(np.uint8), idx


def stop(frames: np.ndarray, start: int, rng: np.random.Generator, lead: int = LEAD,
         length: int = ANOMALY_FRAMES, noise: float = 2.0):
    """(clip, labels, source frame indices): `lead` frames from `start`, then the
    frame after them held for `length` frames, each with fresh Gaussian noise."""
    idx = np.r_[np.arange(start, start + lead), np.full(length, start + lead)]
    clip = frames[idx].astype(np.float32)
    clip[lead:] += rng.normal(0.0, noise, clip[lead:].shape)
    clip = np.clip(np.rint(clip), 0, 255).astype(np.uint8)
    return clip, np.r_[np.zeros(lead), np.ones(length)].astype(np.uint8), idx


def plan(split: str) -> list[dict]:
    """The clips of one split: kind, first source frame, and for normal clips
    their length and whether they are mirrored."""
    lo, hi = SPLITS[split]
    if split == "train":
        return [{"kind": "normal", "start": s, "frames": 100} for s in range(lo, hi, 100)]
    span = LEAD + SKIP * ANOMALY_FRAMES  # source frames a speed-up clip needs
    clips = [{"kind": "normal", "start": s, "frames": 100} for s in (lo, hi - 100)]
    if split == "test":
        clips += [dict(c, mirrored=True) for c in clips]
    clips += [{"kind": "speedup", "start": s} for s in range(lo, hi - span + 1, 15)]
    clips += [{"kind": "stop", "start": s} for s in range(lo, hi - LEAD, 50)]
    return clips


def make_protocol(video: str, out: str, seed: int = 0, scale: float = 0.5, order: str = "forward") -> dict:
    """Writes train/, val/ and test/ clips of `video` (see the module docstring),
    its frames taken in `order` (ORDERS), into `out`, with manifest.json; returns
    the manifest."""
    import cv2

    from anomaly.video import read_video, write_labels, write_video

    frames = read_video(video)
    if len(frames) < SPLITS["test"][1]:
        raise InputError(f"{video}: {len(frames)} frames; the protocol needs vtest.avi's "
                         f"{SPLITS['test'][1]}")
    source = source_order(SPLITS["test"][1], order)
    h, w = frames.shape[1:3]
    size = (int(round(w * scale)) // 2 * 2, int(round(h * scale)) // 2 * 2)
    frames = np.stack([cv2.resize(frames[i], size, interpolation=cv2.INTER_AREA) for i in source])
    rng = np.random.default_rng(seed)
    manifest = {"video": os.path.basename(video), "fps": FPS, "size": list(size), "order": order, "clips": {}}
    for split in SPLITS:
        folder = os.path.join(out, split)
        os.makedirs(folder, exist_ok=True)
        counts: dict = {}
        for c in plan(split):
            kind = c["kind"]
            j = counts[kind] = counts.get(kind, -1) + 1
            if kind == "normal":
                idx = np.arange(c["start"], c["start"] + c["frames"])
                clip, labels = frames[idx], np.zeros(len(idx), np.uint8)
                if c.get("mirrored"):
                    clip = clip[:, :, ::-1]
            elif kind == "speedup":
                clip, labels, idx = speedup(frames, c["start"])
            else:
                clip, labels, idx = stop(frames, c["start"], rng)
            stem = f"{kind}_{j:02d}"
            write_video(os.path.join(folder, stem + ".mp4"), np.ascontiguousarray(clip), FPS)
            write_labels(os.path.join(folder, stem + ".labels.txt"), labels)
            manifest["clips"][f"{split}/{stem}"] = {
                "source_frames": [int(source[idx].min()), int(source[idx].max())], "frames": int(len(idx)),
                "onset": int(np.argmax(labels)) if labels.any() else None,
                "mirrored": bool(c.get("mirrored", False))}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv=None) -> int:
    p = CliParser(__doc__, "python -m anomaly.footage")
    p.add_argument("--out", default=os.path.join("data", "real"), help="output folder (default: %(default)s)")
    p.add_argument("--video", default=None,
                   help="a local copy of vtest.avi (default: fetched from Debian's opencv-doc into --cache)")
    p.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "convlstm-anomaly"),
                   help="where the fetched recording is kept (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the stop clips' noise (default: %(default)s)")
    p.add_argument("--order", choices=ORDERS, default="forward",
                   help="the recording's frames in this order before the parts are cut: late-first trains on "
                        "the last 40 s and tests on the first 20 s, backward plays it backwards (default: %(default)s)")
    args = p.parse_args(argv)

    def run():
        if args.video is not None and not os.path.isfile(args.video):
            raise InputError(f"--video {args.video}: no such file")
        output_dir(args.out)
        video = args.video or fetch_vtest(args.cache)
        m = make_protocol(video, args.out, args.seed, order=args.order)
        kinds: dict = {}
        for name in m["clips"]:
            split, stem = name.split("/")
            kinds.setdefault(split, {}).setdefault(stem.rsplit("_", 1)[0], 0)
            kinds[split][stem.rsplit("_", 1)[0]] += 1
        print(f"wrote {len(m['clips'])} clips of {m['video']} to {args.out}: {kinds}")
    return run_cli(run)


if __name__ == "__main__":
    raise SystemExit(main())
