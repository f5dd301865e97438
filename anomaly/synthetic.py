"""A synthetic crowd benchmark: normal walking, and labelled anomalies.

    python -m anomaly.synthetic --out data/crowd --seed 0

Normal clips: 15-30 people (a dark body and head on a textured floor) walk in
two opposite streams with smooth, varied headings and speeds (0.6-1.3 px/frame
at 128x128), with a slight walking bob, re-entering at the far side.
Anomalies start at a labelled frame:
- panic: everyone turns away from a random point and accelerates 3-4x within
  about six frames, leaving the scene (the crowd scatters); the clip ends when
  fewer than 3 people remain in view, so every labelled frame shows the panic;
- runner: one person runs against the stream at about 4 px/frame;
and, where speed is not the signal, in the "lanes" scene (OUT/lanes/: the top
half of the floor walks right, the bottom half left):
- wrong_way: one or two people turn round and walk against their lane;
- crossing: three to five people walk across the lanes, perpendicular to them;
- stop: the whole crowd stops and stands still;
- gathering: half the crowd walks to one point and stays there.
Clips are written as MP4 files and read back through the same reader as user
videos; labels are one 0/1 per frame in NAME.labels.txt.
"""

from __future__ import annotations

import os

import numpy as np

from cli import CliParser, InputError, output_dir, run_cli, seed_arg

from anomaly.scoring import PATTERN_KINDS

# The anomalies this generator draws (speedup is made from real footage, by anomaly.footage).
SYNTHETIC_KINDS = ("panic", "runner", *PATTERN_KINDS)
from anomaly.video import write_labels, write_video


def _floor(rng, size):
    import cv2

    tex = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 3)
    tex = 170 + 25 * tex / (tex.std() + 1e-6)
    return np.repeat(np.clip(tex, 0, 255)[..., None], 3, axis=-1).astype(np.float32)


def crowd_clip(seed, frames: int = 160, size: int = 128, anomaly: str | None = None,
               onset: int | None = None, layout: str = "mixed", tracks: bool = False):
    """One clip: (uint8 RGB (T, size, size, 3), labels uint8 (T,)); with `tracks`,
    also {"pos": (T, n, 2) x, y of every person, "actors": (n,) bool, the people a
    pattern anomaly moves, "onset": int or None} (for tests).

    Args:
        seed: the clip's seed (anything `np.random.default_rng` takes).
        anomaly: None (normal) or one of `SYNTHETIC_KINDS`, starting at `onset`
            (default: drawn from the clip's middle third).
        layout: "mixed" (both streams everywhere, the original scene) or "lanes"
            (the top half walks right, the bottom half left: a place where
            direction depends on position).
    """
    if anomaly is not None and anomaly not in SYNTHETIC_KINDS:
        raise ValueError(f"anomaly must be one of {SYNTHETIC_KINDS} or None, got {anomaly!r}")
    if layout not in ("mixed", "lanes"):
        raise ValueError(f"layout must be 'mixed' or 'lanes', got {layout!r}")
    rng = np.random.default_rng(seed)  # every draw below in a fixed order: clips are reproducible
    floor = _floor(rng, size)
    c = _crowd(rng, size, layout)
    labels = np.zeros(frames, np.uint8)
    if anomaly is not None:
        onset = int(onset if onset is not None else rng.integers(frames // 3, frames // 2))
    centre = rng.uniform(size * 0.3, size * 0.7, 2)
    runner = None
    path = np.zeros((frames, c["n"], 2))
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        panic = anomaly == "panic" and t >= onset
        if anomaly in PATTERN_KINDS and t == onset:
            c["base"], c["heading"], c["held"], c["goal"], c["actors"] = _pattern_onset(
                anomaly, rng, c["pos"], c["base"], c["heading"], size, centre)
            if c["lane"] is not None and anomaly != "wrong_way":  # wrong-way walkers keep their lane
                c["lane"][c["actors"]] = -1
        _walk(c, rng, size, panic, centre, anomaly, t - onset if onset is not None else 0)
        path[t] = c["pos"]
        if anomaly == "runner" and t == onset:
            y0 = rng.uniform(size * 0.2, size * 0.8)
            if layout == "lanes":  # against the lane it runs in
                y0 = rng.uniform(size * 0.2, size * 0.45)
            # enters at the right edge and runs leftwards, against the rightward stream
            runner = {"pos": np.array([size + 4.0, y0]), "v": np.array([-4.0, rng.normal(0, 0.3)])}
        img = _draw(floor, rng, c, t, size)
        if runner is not None:
            runner["pos"] = runner["pos"] + runner["v"]
            if -6 < runner["pos"][0] < size + 6:
                labels[t] = 1
                _person(img, *runner["pos"], (30, 30, 30))
        if anomaly in PATTERN_KINDS and t >= onset:
            labels[t] = 1
        if panic:
            labels[t] = 1
            pos = c["pos"]
            visible = np.sum((pos[:, 0] > 0) & (pos[:, 0] < size) & (pos[:, 1] > 0) & (pos[:, 1] < size))
            if visible < 3:  # the crowd has left: the clip ends with the panic
                out, labels, path = out[:t], labels[:t], path[:t]
                break
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    if tracks:
        return out, labels, {"pos": path, "actors": c["actors"], "onset": onset}
    return out, labels


def _crowd(rng, size: int, layout: str) -> dict:
    """The people of a clip at its start: positions, streams and lanes, headings,
    speeds, walking-bob phases and colours."""
    n = int(rng.integers(15, 31))
    pos = rng.uniform(0, size, (n, 2))                       # (x, y)
    stream = rng.integers(0, 2, n)                           # 0: rightwards, 1: leftwards
    if layout == "lanes":                                    # the lane decides the stream
        stream = (pos[:, 1] >= size / 2).astype(stream.dtype)
    lane = stream.copy() if layout == "lanes" else None      # -1: free to leave the lane
    base = rng.normal(0, 0.25, n) * (0.4 if layout == "lanes" else 1.0) + np.pi * stream
    heading = base + rng.normal(0, 0.1, n)
    speed = rng.uniform(0.6, 1.3, n)
    return {"n": n, "pos": pos, "lane": lane, "base": base, "heading": heading, "speed": speed,
            "speed_cap": speed * 3.5, "phase": rng.uniform(0, 2 * np.pi, n), "colors": rng.uniform(20, 90, (n, 3)),
            "held": np.zeros(n, bool),   # stop / gathering: people who no longer walk freely
            "goal": None,                # gathering: each gatherer's spot
            "actors": np.zeros(n, bool)}


def _walk(c: dict, rng, size: int, panic: bool, centre, anomaly, since: int) -> None:
    """One frame of walking (in place): headings drift back to each person's
    base direction, speeds wander; in a panic everyone turns away from `centre`
    and speeds up; held people (stop, gathering) move as `_held_motion` says."""
    n, heading, speed = c["n"], c["heading"], c["speed"]
    if panic:
        away = np.arctan2(c["pos"][:, 1] - centre[1], c["pos"][:, 0] - centre[0])
        d = np.angle(np.exp(1j * (away - heading)))
        heading = heading + 0.35 * d
        speed = np.minimum(speed * 1.25, c["speed_cap"])
    else:
        heading = heading + rng.normal(0, 0.04, n) + 0.05 * np.angle(np.exp(1j * (c["base"] - heading)))
        speed = np.clip(speed + rng.normal(0, 0.02, n), 0.5, 1.4)
        c["speed_cap"] = speed * rng.uniform(3.0, 4.0, n)
    if c["held"].any():
        speed, heading = _held_motion(anomaly, c["pos"], speed, heading, c["held"], c["goal"], since)
    pos = c["pos"] + speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    if not panic:
        pos = np.mod(pos, size)
        if c["lane"] is not None:  # walkers keep to their lane
            y, lane = pos[:, 1], c["lane"]
            pos[:, 1] = np.where(lane == 0, np.clip(y, 4, size / 2 - 4),
                                 np.where(lane == 1, np.clip(y, size / 2 + 4, size - 4), y))
    c["pos"], c["heading"], c["speed"] = pos, heading, speed


def _person(img, x, y, color) -> None:
    import cv2

    cv2.ellipse(img, (int(round(x)), int(round(y))), (2, 4), 0, 0, 360, color, -1)
    cv2.circle(img, (int(round(x)), int(round(y - 6))), 2, color, -1)


def _draw(floor, rng, c: dict, t: int, size: int) -> np.ndarray:
    """The frame's float image: the floor, sensor noise, and every person in view
    with a slight walking bob."""
    img = floor.copy()
    img += rng.normal(0, 2.0, (size, size, 1))          # sensor noise
    bob = 0.6 * np.sin(c["phase"] + 0.5 * t * c["speed"])
    for i in range(c["n"]):
        x, y = c["pos"][i, 0], c["pos"][i, 1] + bob[i]
        if -6 < x < size + 6 and -8 < y < size + 8:
            _person(img, x, y, tuple(float(v) for v in c["colors"][i]))
    return img


def _pattern_onset(kind, rng, pos, base, heading, size, centre):
    """What changes at the onset of a pattern anomaly: (base, heading, held, goal,
    actors), `actors` marking the people it moves.

    wrong_way: one or two people turn round and walk against their stream at
    their own speed; crossing: three to five people turn perpendicular to the
    streams (all up or all down) and keep walking; stop: the whole crowd stops
    and stands; gathering: half the crowd (at least 5) walks to a point at
    walking speed and stands there."""
    n = len(pos)
    base, heading = base.copy(), heading.copy()
    held = np.zeros(n, bool)
    goal = None
    inside = np.flatnonzero((pos[:, 0] > 8) & (pos[:, 0] < size - 8) & (pos[:, 1] > 8) & (pos[:, 1] < size - 8))
    if kind == "wrong_way":
        who = rng.choice(inside, min(len(inside), int(rng.integers(1, 3))), replace=False)
        base[who] += np.pi
        heading[who] += np.pi
    elif kind == "crossing":
        who = rng.choice(inside, min(len(inside), int(rng.integers(3, 6))), replace=False)
        base[who] = rng.choice([-1.0, 1.0]) * np.pi / 2
        heading[who] = base[who]
    elif kind == "stop":
        held[:] = True
    else:  # gathering
        who = rng.choice(n, max(5, n // 2), replace=False)
        held[who] = True
        goal = centre + rng.normal(0, 4.0, (n, 2))
    actors = held.copy()
    if kind in ("wrong_way", "crossing"):
        actors[who] = True
    return base, heading, held, goal, actors


def _held_motion(kind, pos, speed, heading, held, goal, since: int):
    """Speed and heading of people under a stop or a gathering (others unchanged):
    stoppers slow by 0.6x a frame (`since` frames after the onset) to a
    standstill within about 7 frames; gatherers head for their spot at walking
    speed and stand once there."""
    speed, heading = speed.copy(), heading.copy()
    if kind == "stop":
        slowed = speed[held] * 0.6 ** (since + 1)
        speed[held] = np.where(slowed < 0.05, 0.0, slowed)
        return speed, heading
    to = goal - pos
    dist = np.hypot(to[:, 0], to[:, 1])
    heading[held] = np.arctan2(to[held, 1], to[held, 0])
    speed[held] = np.where(dist[held] < 1.5, 0.0, np.minimum(speed[held], dist[held]))
    return speed, heading


def write_labelled(folder: str, kinds: list, seeds: list, frames: int, size: int, fps: float,
                   layout: str = "mixed") -> dict:
    """Clips of the given kinds ("normal" or one of `SYNTHETIC_KINDS`) with their labels, NAME_NN.mp4 and
    NAME_NN.labels.txt."""
    os.makedirs(folder, exist_ok=True)
    counts = {}
    for name, s in zip(kinds, seeds):
        j = counts.get(name, 0)
        counts[name] = j + 1
        v, lab = crowd_clip(s, frames, size, anomaly=None if name == "normal" else name, layout=layout)
        stem = os.path.join(folder, f"{name}_{j:02d}")
        write_video(stem + ".mp4", v, fps)
        write_labels(stem + ".labels.txt", lab)
    return counts


def make_benchmark(out: str, seed: int = 0, frames: int = 160, size: int = 128, n_train: int = 10,
                   n_test_normal: int = 3, n_panic: int = 4, n_runner: int = 4, fps: float = 25.0,
                   n_val_each: int = 6, lanes_train: int = 10, lanes_each: int = 4,
                   lanes_test2_each: int = 8) -> dict:
    """Writes OUT/train/*.mp4 (normal), OUT/val/ (labelled, for design choices such
    as the score reduction) and OUT/test/*.mp4 + *.labels.txt (the reported numbers):
    the "mixed" scene (normal, panic, runner). Then the same three folders under
    OUT/lanes/ for the "lanes" scene (each half of the floor walks one way):
    `lanes_train` normal training clips, and `lanes_each` clips of every kind in
    ("normal" and `SYNTHETIC_KINDS`) in its val/ and test/, and `lanes_test2_each` of every kind in its
    test2/: a second test set, drawn when the first had been read for two
    choices, and read once for the final numbers (anomaly/README.md)."""
    os.makedirs(os.path.join(out, "train"), exist_ok=True)
    os.makedirs(os.path.join(out, "test"), exist_ok=True)
    if n_train > 1000:
        raise InputError("at most 1000 training clips")
    for i in range(n_train):
        v, _ = crowd_clip([seed, i], frames, size)
        write_video(os.path.join(out, "train", f"normal_{i:02d}.mp4"), v, fps)
    kinds = ["normal"] * n_test_normal + ["panic"] * n_panic + ["runner"] * n_runner
    # test seeds do not depend on n_train: more training clips leave the test clips as they are
    # (1010 + i: the benchmark's test seeds, fixed so its clips and numbers stay comparable)
    test = write_labelled(os.path.join(out, "test"), kinds, [[seed, 1010 + i] for i in range(len(kinds))],
                          frames, size, fps)
    vkinds = ["normal", "panic", "runner"] * n_val_each
    val = write_labelled(os.path.join(out, "val"), vkinds, [[seed, 2000 + i] for i in range(len(vkinds))],
                         frames, size, fps)
    res = {"train": n_train, "val": val, "test": test, "frames": frames, "size": size}
    if lanes_train or lanes_each or lanes_test2_each:
        lanes = os.path.join(out, "lanes")
        os.makedirs(os.path.join(lanes, "train"), exist_ok=True)
        for i in range(lanes_train):
            v, _ = crowd_clip([seed, 5000 + i], frames, size, layout="lanes")
            write_video(os.path.join(lanes, "train", f"normal_{i:02d}.mp4"), v, fps)
        res["lanes"] = {"train": lanes_train}
        for split, first, n in (("val", 6000, lanes_each), ("test", 7000, lanes_each),
                                ("test2", 8000, lanes_test2_each)):
            each = [k for k in ("normal", *SYNTHETIC_KINDS) for _ in range(n)]
            if each:
                res["lanes"][split] = write_labelled(os.path.join(lanes, split), each,
                                                     [[seed, first + i] for i in range(len(each))],
                                                     frames, size, fps, layout="lanes")
    return res


def main(argv=None) -> int:
    p = CliParser(__doc__, "python -m anomaly.synthetic")
    p.add_argument("--out", default=os.path.join("data", "crowd"), help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=0, help="the benchmark's seed (default: %(default)s)")
    p.add_argument("--frames", type=int, default=160, help="frames per clip (default: %(default)s)")
    p.add_argument("--train-clips", type=int, default=10,
                   help="normal training clips of the mixed scene (default: %(default)s)")
    p.add_argument("--val-each", type=int, default=6,
                   help="validation clips of each kind (normal, panic, runner) (default: %(default)s)")
    p.add_argument("--lanes-train-clips", type=int, default=10,
                   help="normal training clips of the lanes scene (default: %(default)s)")
    p.add_argument("--lanes-each", type=int, default=4,
                   help="validation and test clips of each kind in the lanes scene (default: %(default)s)")
    p.add_argument("--lanes-test2-each", type=int, default=8,
                   help="clips of each kind in the lanes scene's second test set, lanes/test2/ "
                        "(default: %(default)s)")
    args = p.parse_args(argv)

    def run():
        if args.frames < 16:
            raise InputError(f"--frames must be >= 16 (an anomaly starts in the clip's middle third), got {args.frames}")
        for flag in ("train_clips", "val_each", "lanes_train_clips", "lanes_each", "lanes_test2_each"):
            if getattr(args, flag) < 0:
                raise InputError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
        output_dir(args.out)
        print(make_benchmark(args.out, args.seed, args.frames, n_train=args.train_clips, n_val_each=args.val_each,
                             lanes_train=args.lanes_train_clips, lanes_each=args.lanes_each,
                             lanes_test2_each=args.lanes_test2_each))
    return run_cli(run)


if __name__ == "__main__":
    raise SystemExit(main())
