"""Helpers shared by the benchmark scripts: import path, timing, memory, FLOPs, the fused detector's choice clips."""

from __future__ import annotations

import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

from cli import seed_arg  # noqa: E402  (after the path above)


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Samples RSS every 20 ms inside a `with` block; `.peak` is the highest seen (MB)."""

    def __enter__(self):
        self.peak, self._stop = rss_mb(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mb())


def convlstm_stack_flops(frame: int, channels: int, filters, kernels, head_kernel, patch: int = 1) -> float:
    """Forward FLOPs (2 x multiply-adds) per frame of the predictor, from layer shapes.

    ConvLSTM: 4 gates x (input conv + recurrent conv) on an (frame/patch)^2 grid.
    Head: Conv3D with prod(head_kernel) taps.
    """
    s = frame // patch
    cin = channels * patch * patch
    total = 0.0
    for f, k in zip(filters, kernels):
        total += 2.0 * s * s * k * k * (cin + f) * 4 * f
        cin = f
    kt, kh, kw = head_kernel
    total += 2.0 * s * s * kt * kh * kw * cin * channels * patch * patch
    return total


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def add_generated_set_flags(p, split: str = "test", what: str = "sequences") -> None:
    """--mnist, --split, --sequences, --seed: the Moving MNIST set `evaluate.py
    --split SPLIT --seed SEED` generates (the reference generator; `generated_set`)."""
    p.add_argument("--mnist", default=None, help="MNIST source (folder of IDX files or mnist.npz)")
    p.add_argument("--split", default=split, choices=["test", "val"], help="digits (default: %(default)s)")
    p.add_argument("--sequences", type=int, default=1000, help=f"{what} (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the set, as evaluate.py's (default: %(default)s)")


def generated_set(args, offsets=(0.0,)) -> tuple[dict, dict]:
    """({offset: uint8 videos}, a description for the report) for the flags of
    `add_generated_set_flags`: the same trajectories rasterised at each offset."""
    import data

    digits = data.load_mnist_digits(args.mnist, args.split)
    sets = {o: data.generate_in_chunks(digits, args.sequences, seed=[args.seed, 3], offset=o) for o in offsets}
    lo, hi = data.TEST_SPLIT_RANGES[args.split]
    return sets, {"digits": f"MNIST test split {lo}-{hi - 1}", "split": args.split,
                  "sequences": args.sequences, "seed": args.seed}


def fused_choice_args(doc: str, argv=None, normal: str = "the scales come from", more=None):
    """The flags of the benchmarks that compare choices for a fused detector on
    validation clips: --model, --normal-videos (normal clips: `normal` says what for), --videos, --out,
    and those that `more(parser)` adds."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="fused detector folder")
    p.add_argument("--normal-videos", required=True, help=f"glob of normal clips {normal}")
    p.add_argument("--videos", required=True, help="glob of labelled choice clips")
    p.add_argument("--out", required=True, help="JSON to write")
    if more is not None:
        more(p)
    return p.parse_args(argv)


def fused_part_scores(det, videos: str, labelled: bool = True, flag: str = "--videos") -> list:
    """A fused detector's named part scores of each clip of the glob `videos`
    (`FusedDetector.named_part_scores`): (kind, {part: {its named part: (T,)
    scores}}, (T,) labels, fps) each; with `labelled` False (normal clips
    without labels files), {part: {its named part: (T,) scores}} each. An
    empty glob is an error naming `flag`."""
    from anomaly.evaluate import clip_kind
    from anomaly.video import expand_videos, labels_for, read_video, video_fps

    clips = []
    for q in expand_videos(videos, flag):
        raw = det.features(read_video(q))
        scores = det.named_part_scores(raw)
        clips.append((clip_kind(os.path.splitext(os.path.basename(q))[0]), scores, labels_for(q, len(raw), None),
                      video_fps(q)) if labelled else scores)
    return clips
