"""Data: MNIST digits, the Moving MNIST generator, the official-file loader and
the tf.data pipelines.

Arrays are (N, T, H, W) uint8 on disk and from the generator, and
(N, T, H, W, 1) float32 in [0, 1] inside the program.
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib

import numpy as np

from cli import InputError, is_fetch_failure

# Where the official Moving MNIST test file lives (Srivastava et al. 2015).
MOVING_MNIST_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
MOVING_MNIST_MD5 = "be083ec986bfe91a449d63653c411eb2"
# Keras's copy of MNIST (both splits).
MNIST_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# The environment variable that points at a local MNIST copy (file or folder).
MNIST_ENV = "MNIST_PATH"

# Digit ranges inside the 10,000-digit MNIST *test* split. Validation and test
# digits are the same whatever the source; digits 9000-9999 are never read.
TEST_SPLIT_RANGES = {"train": (0, 8000), "val": (8000, 8500), "test": (8500, 9000)}
SPLITS = tuple(TEST_SPLIT_RANGES)

DIGIT_SIZE = 28
OFFICIAL_LAYOUT = "uint8 array of shape (20, N, 64, 64) (time-major, as mnist_test_seq.npy)"


class DataError(InputError):
    """Raised for data that cannot be used; the message says what and how to fix it."""


# --------------------------------------------------------------------------- MNIST

def _read_idx_images(path: str) -> np.ndarray:
    """Reads an IDX3 image file (optionally gzip'd) as uint8 (N, rows, cols)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            header = f.read(16)
            if len(header) < 16:
                raise DataError(f"{path}: truncated IDX header")
            magic, n, rows, cols = struct.unpack(">IIII", header)
            if magic != 2051:
                raise DataError(f"{path}: not an IDX image file (magic {magic}, expected 2051)")
            buf = f.read(n * rows * cols)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read MNIST IDX file ({e})") from None
    if len(buf) != n * rows * cols:
        raise DataError(f"{path}: truncated, {len(buf)} of {n * rows * cols} pixel bytes")
    return np.frombuffer(buf, np.uint8).reshape(n, rows, cols)


def _find(folder: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    return None


def _mnist_arrays(path: str | None) -> tuple[np.ndarray | None, np.ndarray]:
    """(x_train or None, x_test) from a folder of IDX files, an .npz or the download."""
    if path is None:
        path = os.environ.get(MNIST_ENV) or None
    if path is None:
        import keras

        try:
            path = keras.utils.get_file(
                "mnist.npz", origin=MNIST_NPZ_URL, file_hash=MNIST_NPZ_SHA256)
        except Exception as e:
            if not is_fetch_failure(e):
                raise
            raise DataError(
                f"cannot download MNIST ({e}); pass --mnist PATH (a folder with "
                f"t10k-images-idx3-ubyte.gz, or mnist.npz) or set {MNIST_ENV}") from None
    if not os.path.exists(path):
        raise DataError(f"MNIST path {path!r} does not exist; pass --mnist with a folder "
                        "of IDX .gz files or an mnist.npz")
    if os.path.isdir(path):
        test = _find(path, "t10k-images-idx3-ubyte")
        if test is None:
            raise DataError(f"{path}: no t10k-images-idx3-ubyte(.gz) in this folder")
        train = _find(path, "train-images-idx3-ubyte")
        return (_read_idx_images(train) if train else None), _read_idx_images(test)
    try:
        with np.load(path, allow_pickle=False) as f:
            x_test = np.asarray(f["x_test"])
            x_train = np.asarray(f["x_train"]) if "x_train" in f.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable mnist.npz with x_test ({e})") from None
    return x_train, x_test


def load_mnist_digits(path: str | None = None, split: str = "train") -> np.ndarray:
    """MNIST digit images for one split of the project's protocol.

    Args:
        path: a folder of the original IDX files (`t10k-images-idx3-ubyte.gz`,
            optionally `train-images-idx3-ubyte.gz`), a Keras `mnist.npz`, or
            None: the `MNIST_PATH` environment variable, else the Keras download.
        split: "train", "val" or "test". Validation and test are always test-split
            digits 8000-8499 and 8500-8999. Training uses the 60,000-digit train
            split when the source has it, else test-split digits 0-7999.

    Returns:
        uint8 array (N, 28, 28).
    """
    if split not in TEST_SPLIT_RANGES:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    x_train, x_test = _mnist_arrays(path)
    if x_test.ndim != 3 or x_test.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or x_test.dtype != np.uint8:
        raise DataError(f"MNIST images must be uint8 (N, 28, 28), got {x_test.dtype} {x_test.shape}")
    if split == "train" and x_train is not None:
        return x_train
    lo, hi = TEST_SPLIT_RANGES[split]
    if len(x_test) < hi:
        raise DataError(f"MNIST test split has {len(x_test)} digits; the {split} split needs {hi}")
    return x_test[lo:hi]


# ------------------------------------------------------------- Moving MNIST generator

def _as_rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def bounce(start: np.ndarray, theta: np.ndarray, seq_len: int, step: float = 0.1) -> np.ndarray:
    """Positions of bouncing points in the unit square, exactly as the reference
    generator (Srivastava et al. 2015, `GetRandomTrajectory`; OpenSTL's
    `get_random_trajectory`) moves them.

    Every frame first takes a step of `step` along the velocity (sin theta,
    cos theta) for (row, col), then bounces: a coordinate at or past 0 is set
    to 0 and its velocity component negated, likewise at or past 1. The first
    recorded position is therefore one step after `start`.

    Args:
        start: float (..., 2) initial (row, col) in [0, 1).
        theta: float (...) direction angles in radians.
        seq_len: frames to record.
        step: step length, as a fraction of the free range.

    Returns:
        float64 (..., seq_len, 2) positions in [0, 1].
    """
    pos = np.array(start, np.float64)
    theta = np.asarray(theta, np.float64)
    vel = np.stack([np.sin(theta), np.cos(theta)], axis=-1)
    out = np.empty(pos.shape[:-1] + (seq_len, 2))
    for t in range(seq_len):
        pos = pos + vel * step
        low, high = pos <= 0.0, pos >= 1.0
        pos = np.where(low, 0.0, np.where(high, 1.0, pos))
        vel = np.where(low | high, -vel, vel)
        out[..., t, :] = pos
    return out


def rasterise(positions: np.ndarray, free: int, offset=0.0) -> np.ndarray:
    """Unit-square positions -> integer top-left pixels: floor(position * free + offset).

    offset 0 is the reference's `(free * position).astype(int32)` (truncation;
    positions are >= 0); 0.5 rounds to the nearest pixel. An array `offset`
    broadcasts against `positions` (a sub-pixel shift of the pixel grid). The
    result stays in [0, free] for offsets in [0, 1).
    """
    return np.floor(np.asarray(positions) * free + offset).astype(np.int64)


def moving_mnist_trajectories(num_sequences: int, seq_len: int = 20, num_digits: int = 2,
                              size: int = 64, seed=None, step: float = 0.1, offset: float = 0.0,
                              jitter: float = 0.0) -> np.ndarray:
    """Top-left digit positions of bouncing digits, as the reference generator makes them.

    Each digit starts uniformly in the unit square (scaled to the free area
    [0, size - 28]) with a uniform random direction, and moves as `bounce`
    says; positions are rasterised by `rasterise`.

    Args:
        offset: the sub-pixel offset of the pixel grid (0 = the reference's truncation).
        jitter: if nonzero, draw the offset uniformly in [0, jitter) for every
            digit and axis instead (constant over a sequence): the same motion
            under several rasterisation conventions, for training a model that
            must not care. 1 covers every convention; 0.5 the ones between
            truncation (0) and rounding (0.5), which then sit at the two ends
            of the range, equally far from its middle. `True` reads as 1.

    Returns:
        int64 array (num_sequences, num_digits, seq_len, 2) of (row, col).
    """
    rng = _as_rng(seed)
    free = size - DIGIT_SIZE
    if free < 0:
        raise InputError(f"size must be >= {DIGIT_SIZE}, got {size}")
    if not 0.0 <= offset < 1.0:
        raise InputError(f"offset must be in [0, 1), got {offset}")
    if not 0.0 <= jitter <= 1.0:
        raise InputError(f"jitter must be in [0, 1], got {jitter}")
    start = rng.uniform(size=(num_sequences, num_digits, 2))
    theta = rng.uniform(0.0, 2.0 * np.pi, size=(num_sequences, num_digits))
    if jitter:
        offset = rng.uniform(0.0, float(jitter), size=(num_sequences, num_digits, 1, 2))
    return rasterise(bounce(start, theta, seq_len, step), free, offset)


def generate_moving_mnist(digits: np.ndarray, num_sequences: int, seq_len: int = 20,
                          size: int = 64, num_digits: int = 2, seed=None,
                          return_trajectories: bool = False, offset: float = 0.0,
                          jitter: float = 0.0):
    """Bouncing-digit sequences (Srivastava et al. 2015), vectorised.

    Args:
        digits: uint8 (M, 28, 28) digit images to draw from (uniformly, with
            replacement, as OpenSTL draws them).
        num_sequences, seq_len, size, num_digits: output shape and content.
        seed: int, None or a `np.random.Generator`; the same int gives the same array.
        offset, jitter: the rasterisation (`moving_mnist_trajectories`); the
            defaults are the reference's.
        return_trajectories: also return the (N, D, T, 2) positions and the
            (N, D) indices of the digits used.

    Returns:
        uint8 (num_sequences, seq_len, size, size); overlapping digits combine
        with `max`.
    """
    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or len(digits) == 0:
        raise InputError(f"digits must be (M, 28, 28), got {digits.shape}")
    rng = _as_rng(seed)
    n, t = num_sequences, seq_len
    which = rng.integers(0, len(digits), size=(n, num_digits))
    # Jitter offsets are the trajectories' last draws: with or without them the
    # same seed gives the same digits on the same continuous paths.
    traj = moving_mnist_trajectories(n, t, num_digits, size, rng, offset=offset, jitter=jitter)
    canvas = np.zeros(n * t * size * size, np.uint8)
    # Flat index of every digit pixel in every frame: one gather + one scatter per digit.
    offsets = (np.arange(DIGIT_SIZE)[:, None] * size + np.arange(DIGIT_SIZE)[None, :]).ravel()
    frame0 = (np.arange(n)[:, None] * t + np.arange(t)[None, :]) * (size * size)  # (n, t)
    for d in range(num_digits):
        corner = frame0 + traj[:, d, :, 0] * size + traj[:, d, :, 1]          # (n, t)
        idx = (corner[:, :, None] + offsets).ravel()
        pix = np.broadcast_to(digits[which[:, d]].reshape(n, 1, -1), (n, t, offsets.size))
        canvas[idx] = np.maximum(canvas[idx], pix.ravel())
    video = canvas.reshape(n, t, size, size)
    if return_trajectories:
        return video, traj, which
    return video


def generate_in_chunks(digits, num_sequences, seq_len=20, num_digits=2, seed=None, chunk=512,
                       offset: float = 0.0):
    """`generate_moving_mnist` in chunks of bounded memory, from one seeded stream."""
    rng = _as_rng(seed)
    parts = [generate_moving_mnist(digits, min(chunk, num_sequences - i), seq_len,
                                   num_digits=num_digits, seed=rng, offset=offset)
             for i in range(0, num_sequences, chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, seq_len, 64, 64), np.uint8)


# ------------------------------------------------------------- official test file

def open_moving_mnist_npy(path: str) -> np.ndarray:
    """The official `mnist_test_seq.npy`, memory-mapped, as a uint8 (N, 20, 64, 64) view.

    No float copy is made: callers convert chunk by chunk.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file; pass --data with the path of mnist_test_seq.npy")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy file ({e}); expected {OFFICIAL_LAYOUT}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 4 \
            or arr.shape[0] != 20 or arr.shape[2:] != (64, 64):
        got = f"{getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}"
        raise DataError(f"{path}: expected {OFFICIAL_LAYOUT}, got {got}")
    if arr.shape[1] == 0:
        raise DataError(f"{path}: holds no sequences (shape {arr.shape}); expected {OFFICIAL_LAYOUT} with N >= 1")
    return arr.transpose(1, 0, 2, 3)


def save_moving_mnist_npy(path: str, videos: np.ndarray) -> None:
    """Writes uint8 sequences (N, T, 64, 64) in the official file's layout,
    time-major (T, N, 64, 64), as `open_moving_mnist_npy` reads it back."""
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 4:
        raise InputError(f"videos must be uint8 (N, T, H, W), got {videos.dtype} {videos.shape}")
    np.save(path, np.ascontiguousarray(videos.transpose(1, 0, 2, 3)), allow_pickle=False)


def load_moving_mnist_npy(path: str | None = None) -> np.ndarray:
    """The official Moving MNIST test set as float32 (N, 20, 64, 64, 1) in [0, 1].

    Args:
        path: the `mnist_test_seq.npy` file (uint8, time-major (20, N, 64, 64)).
            None downloads and caches it with `keras.utils.get_file` (md5-checked).

    Raises:
        DataError (a ValueError) naming the expected layout for any other file.
    """
    if path is None:
        import keras

        path = keras.utils.get_file("mnist_test_seq.npy", origin=MOVING_MNIST_URL,
                                    file_hash=MOVING_MNIST_MD5)
    view = open_moving_mnist_npy(path)
    return to_float(view)


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W) -> float32 (..., H, W, 1) in [0, 1]."""
    return (np.asarray(frames, np.float32) / 255.0)[..., None]


# ------------------------------------------------------------------ tf.data pipelines

def shift_for_next_frame(videos):
    """uint8 (B, T, H, W) -> (inputs frames 0..T-2, targets frames 1..T-1), float32 (.., 1)."""
    import tensorflow as tf

    x = tf.cast(videos, tf.float32)[..., None] / 255.0
    return x[:, :-1], x[:, 1:]


def train_batch(digits: np.ndarray, step: int, batch_size: int, seq_len: int = 20,
                num_digits: int = 2, seed: int = 0, worker: int = 0, jitter: float = 0.0) -> np.ndarray:
    """Training batch number `step` of the endless stream: uint8 (B, T, 64, 64).

    A batch is a function of (seed, worker, step) alone, so a resumed run
    continues the stream where it stopped instead of replaying its start, and
    each worker of a multi-worker run draws sequences of its own. `jitter`:
    the width of the random sub-pixel grid offsets (`moving_mnist_trajectories`)."""
    rng = np.random.default_rng([seed, 1, worker, step])
    return generate_moving_mnist(digits, batch_size, seq_len, num_digits=num_digits, seed=rng,
                                 jitter=jitter)


def train_batches(digits: np.ndarray, batch_size: int, seq_len: int = 20, num_digits: int = 2,
                  seed: int = 0, worker: int = 0, start_step: int = 0, prefetch: int = 4,
                  jitter: float = 0.0):
    """`train_batch` from `start_step` on, shifted for next-frame training, as
    float32 (inputs (B, T-1, 64, 64, 1), targets (B, T-1, 64, 64, 1)) pairs: the
    stream for backends without tf.data (JAX). A background thread generates
    `prefetch` batches ahead (NumPy releases the GIL for most of the work)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))

    def produce():
        step = start_step
        while True:
            v = train_batch(digits, step, batch_size, seq_len, num_digits, seed, worker, jitter)
            x = v.astype(np.float32)[..., None] / np.float32(255.0)
            q.put((x[:, :-1], x[:, 1:]))
            step += 1

    threading.Thread(target=produce, daemon=True).start()
    while True:
        yield q.get()


def train_dataset(digits: np.ndarray, batch_size: int, seq_len: int = 20,
                  num_digits: int = 2, seed: int = 0, worker: int = 0, start_step: int = 0,
                  jitter: float = 0.0):
    """The endless stream of `train_batch`es from `start_step` on, as tf.data,
    shifted for next-frame training (tf.data auto-sharding is off: the data is
    generated, not read)."""
    import tensorflow as tf

    def batches():
        step = start_step
        while True:
            yield train_batch(digits, step, batch_size, seq_len, num_digits, seed, worker, jitter)
            step += 1

    spec = tf.TensorSpec((batch_size, seq_len, 64, 64), tf.uint8)
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec)
    return _no_autoshard(ds.map(shift_for_next_frame).prefetch(tf.data.AUTOTUNE))


def _no_autoshard(ds):
    import tensorflow as tf

    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(opts)


def fixed_dataset(videos: np.ndarray, batch_size: int):
    """A finite tf.data dataset over fixed uint8 (N, T, H, W) videos, shifted."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(videos).batch(batch_size)
    return _no_autoshard(ds.map(shift_for_next_frame).prefetch(tf.data.AUTOTUNE))


def validation_videos(digits: np.ndarray, num_sequences: int, seq_len: int = 20,
                      num_digits: int = 2, seed: int = 0) -> np.ndarray:
    """The fixed, seeded validation (or test) set: uint8 (N, T, 64, 64)."""
    return generate_in_chunks(digits, num_sequences, seq_len, num_digits, seed=[seed, 2])
