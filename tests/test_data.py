import numpy as np
import pytest

import data
from conftest import toy_digits, write_idx_images


# ------------------------------------------------------------------ official file

def test_official_layout_is_transposed_to_sequence_major(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (20, 3, 64, 64), dtype=np.uint8)
    path = str(tmp_path / "mnist_test_seq.npy")
    np.save(path, raw)
    x = data.load_moving_mnist_npy(path)
    assert x.shape == (3, 20, 64, 64, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x[1, 7, :, :, 0], raw[7, 1] / 255.0, rtol=1e-6)
    view = data.open_moving_mnist_npy(path)
    assert isinstance(view.base, np.memmap) or isinstance(view, np.memmap)
    np.testing.assert_array_equal(view[2, 19], raw[19, 2])


@pytest.mark.parametrize("arr", [
    np.zeros((3, 20, 64, 64), np.uint8),        # sequence-major
    np.zeros((20, 3, 64, 64), np.float32),      # wrong dtype
    np.zeros((20, 3, 32, 32), np.uint8),        # wrong frame size
    np.zeros((20, 3, 64, 64, 1), np.uint8),     # extra axis
], ids=["seq-major", "float", "32px", "5d"])
def test_other_layouts_raise_naming_the_expected_one(tmp_path, arr):
    path = str(tmp_path / "bad.npy")
    np.save(path, arr)
    with pytest.raises(ValueError, match=r"\(20, N, 64, 64\)"):
        data.load_moving_mnist_npy(path)


def test_pickled_or_truncated_files_raise(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(str(p), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="expected"):
        data.load_moving_mnist_npy(str(p))
    good = tmp_path / "good.npy"
    np.save(str(good), np.zeros((20, 2, 64, 64), np.uint8))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError):
        data.load_moving_mnist_npy(str(cut))
    with pytest.raises(ValueError, match="no such file"):
        data.load_moving_mnist_npy(str(tmp_path / "missing.npy"))


# ------------------------------------------------------------------------- digits

def test_idx_folder_splits(mnist_dir):
    digits = toy_digits(9000)
    tr = data.load_mnist_digits(mnist_dir, "train")
    va = data.load_mnist_digits(mnist_dir, "val")
    te = data.load_mnist_digits(mnist_dir, "test")
    assert tr.shape == (8000, 28, 28) and va.shape == (500, 28, 28) and te.shape == (500, 28, 28)
    np.testing.assert_array_equal(va, digits[8000:8500])
    np.testing.assert_array_equal(te, digits[8500:9000])


def test_npz_and_env_var(tmp_path, monkeypatch):
    x_test = toy_digits(9000, seed=1)
    x_train = toy_digits(50, seed=2)
    p = str(tmp_path / "mnist.npz")
    np.savez(p, x_train=x_train, x_test=x_test)
    monkeypatch.setenv(data.MNIST_ENV, p)
    np.testing.assert_array_equal(data.load_mnist_digits(split="train"), x_train)  # the 60k split when present
    np.testing.assert_array_equal(data.load_mnist_digits(split="test"), x_test[8500:9000])


def test_full_idx_folder_uses_train_split(tmp_path):
    write_idx_images(str(tmp_path / "t10k-images-idx3-ubyte.gz"), toy_digits(9000))
    write_idx_images(str(tmp_path / "train-images-idx3-ubyte.gz"), toy_digits(30, seed=5))
    assert len(data.load_mnist_digits(str(tmp_path), "train")) == 30


def test_bad_mnist_sources(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load_mnist_digits(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="t10k-images"):
        data.load_mnist_digits(str(tmp_path))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read|truncated"):
        data.load_mnist_digits(str(tmp_path))
    with pytest.raises(ValueError, match="split"):
        data.load_mnist_digits(str(tmp_path), "holdout")


def test_real_shared_mnist(shared_mnist):
    te = data.load_mnist_digits(shared_mnist, "test")
    assert te.shape == (500, 28, 28) and te.dtype == np.uint8 and te.max() == 255


# ---------------------------------------------------------------------- generator

DIGITS = toy_digits(50)


def test_generator_shape_and_determinism():
    a = data.generate_moving_mnist(DIGITS, 5, seq_len=7, seed=3)
    b = data.generate_moving_mnist(DIGITS, 5, seq_len=7, seed=3)
    c = data.generate_moving_mnist(DIGITS, 5, seq_len=7, seed=4)
    assert a.shape == (5, 7, 64, 64) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_trajectories_stay_inside_bounce_and_keep_speed():
    traj = data.moving_mnist_trajectories(400, seq_len=40, num_digits=2, seed=0)
    assert traj.min() >= 0 and traj.max() <= 64 - 28  # digit fully inside the canvas
    pos = data.moving_mnist_trajectories(400, seq_len=40, num_digits=2, seed=0)
    step = np.diff(pos, axis=2).astype(float)  # (N, D, T-1, 2)
    # fixed speed: 0.1 of the 36-pixel free range = 3.6 px per frame in a straight run
    inner = (pos[:, :, 1:-1] > 4) & (pos[:, :, 1:-1] < 32)
    speed = np.hypot(step[..., 0], step[..., 1])[:, :, 1:][inner.all(-1)]
    assert abs(np.median(speed) - 3.6) < 0.5
    # bounces: the direction of a component flips, and only at a border
    flips = np.sign(step[:, :, 1:]) * np.sign(step[:, :, :-1]) < 0
    assert flips.any()
    at = pos[:, :, 1:-1][flips]
    assert np.all((at <= 4) | (at >= 32))


def reference_trajectory(y, x, theta, length, canvas=36, step_length=0.1):
    """The reference generator's loop (Srivastava et al. 2015 `GetRandomTrajectory`,
    OpenSTL `get_random_trajectory`) written out for one digit, scalar by scalar:
    step, then bounce each coordinate, then record; truncate to int at the end."""
    pos, vel = [y, x], [np.sin(theta), np.cos(theta)]
    rows, cols = [], []
    for _ in range(length):
        pos[0] += vel[0] * step_length
        pos[1] += vel[1] * step_length
        for k in (1, 0):  # x, then y, as the reference checks them
            if pos[k] <= 0:
                pos[k] = 0
                vel[k] = -vel[k]
            if pos[k] >= 1.0:
                pos[k] = 1.0
                vel[k] = -vel[k]
        rows.append(pos[0])
        cols.append(pos[1])
    return (np.array(rows) * canvas).astype(np.int32), (np.array(cols) * canvas).astype(np.int32)


def test_trajectories_equal_the_reference_loop_frame_by_frame():
    n, d, t = 300, 2, 30
    traj = data.moving_mnist_trajectories(n, t, d, seed=5)
    rng = np.random.default_rng(5)  # the generator's draws, in its order
    start = rng.uniform(size=(n, d, 2))
    theta = rng.uniform(0.0, 2.0 * np.pi, size=(n, d))
    for i in range(n):
        for j in range(d):
            rows, cols = reference_trajectory(start[i, j, 0], start[i, j, 1], theta[i, j], t)
            np.testing.assert_array_equal(traj[i, j, :, 0], rows)
            np.testing.assert_array_equal(traj[i, j, :, 1], cols)


def test_first_frame_is_one_step_after_the_start():
    pos = data.bounce(np.array([0.5, 0.95]), np.array(0.0), 3)  # moving right (+col)
    np.testing.assert_allclose(pos[:, 0], 0.5)
    np.testing.assert_allclose(pos[:, 1], [1.0, 0.9, 0.8])  # 1.05 clamps to 1 and turns back
    assert data.rasterise(pos, 36).tolist() == [[18, 36], [18, 32], [18, 28]]  # int(0.9 * 36) = 32
    assert data.rasterise(pos, 36, 0.5).tolist() == [[18, 36], [18, 32], [18, 29]]  # 28.8 rounds up


def test_border_contacts_show_truncation():
    """Truncation puts a digit on pixel 0 for positions in [0, 1/36) but on pixel 36
    only when it is clamped at 1 exactly: the near borders are touched ~1.6x as often
    as the far ones. Rounding (offset 0.5) and jitter touch both equally."""
    traj = data.moving_mnist_trajectories(4000, 20, 2, seed=0)
    near, far = (traj == 0).mean(axis=(0, 1, 2)), (traj == 36).mean(axis=(0, 1, 2))  # per axis
    assert np.all((near / far > 1.4) & (near / far < 1.8)), (near, far)
    rng = np.random.default_rng(0)
    start, theta = rng.uniform(size=(4000, 2, 2)), rng.uniform(0, 2 * np.pi, (4000, 2))
    clamped_far = (data.bounce(start, theta, 20) == 1.0).mean(axis=(0, 1, 2))
    np.testing.assert_array_equal(far, clamped_far)  # pixel 36 <=> clamped at the far border
    for kw in ({"offset": 0.5}, {"jitter": True}):
        t2 = data.moving_mnist_trajectories(4000, 20, 2, seed=0, **kw)
        ratio = (t2 == 0).mean() / (t2 == 36).mean()
        assert 0.9 < ratio < 1.1, (kw, ratio)
        assert t2.min() == 0 and t2.max() == 36


def test_jitter_shifts_a_sequence_by_one_constant_sub_pixel_offset():
    a = data.moving_mnist_trajectories(200, 20, 2, seed=3)
    b = data.moving_mnist_trajectories(200, 20, 2, seed=3, jitter=True)
    diff = b - a
    assert set(np.unique(diff)) <= {0, 1} and diff.any() and not diff.all()
    with pytest.raises(ValueError, match="offset"):
        data.moving_mnist_trajectories(2, 3, offset=1.0)


def test_jitter_width_bounds_the_offsets_and_keeps_the_stream():
    """jitter=w draws u in [0, w): at w = 0.5 a digit sits at its truncated position or
    one pixel further, the latter exactly when the fraction of position * 36 is >= 1 - u,
    i.e. never beyond rounding's. True reads as 1, the same draws as before widths existed."""
    rng = np.random.default_rng(3)
    start, theta = rng.uniform(size=(200, 2, 2)), rng.uniform(0.0, 2 * np.pi, (200, 2))
    frac = (data.bounce(start, theta, 20) * 36) % 1.0
    u = rng.uniform(0.0, 0.5, size=(200, 2, 1, 2))
    half = data.moving_mnist_trajectories(200, 20, 2, seed=3, jitter=0.5)
    diff = half - data.moving_mnist_trajectories(200, 20, 2, seed=3)
    np.testing.assert_array_equal(diff, (frac >= 1.0 - u).astype(int))
    assert not diff[frac < 0.5].any()  # an offset below 0.5 never moves a digit that rounding keeps
    np.testing.assert_array_equal(data.moving_mnist_trajectories(50, 20, 2, seed=3, jitter=True),
                                  data.moving_mnist_trajectories(50, 20, 2, seed=3, jitter=1.0))
    with pytest.raises(ValueError, match="jitter must be in"):
        data.moving_mnist_trajectories(2, 3, jitter=1.5)


def test_configs_saved_with_jitter_on_or_off_read_as_widths():
    import json

    from config import Config, preset_config

    d = json.loads(preset_config("cpu").to_json())
    for saved, width in ((True, 1.0), (False, 0.0), (0.5, 0.5)):
        d["train"]["subpixel_jitter"] = saved
        cfg = Config.from_dict(d)
        assert type(cfg.train.subpixel_jitter) is float and cfg.train.subpixel_jitter == width
        assert json.loads(cfg.to_json())["train"]["subpixel_jitter"] == width


def test_training_stream_jitter_is_seeded_and_only_moves_digits():
    kw = dict(batch_size=6, seq_len=6, num_digits=1, seed=0)
    a = data.train_batch(DIGITS, 7, **kw)
    b = data.train_batch(DIGITS, 7, jitter=True, **kw)
    np.testing.assert_array_equal(b, data.train_batch(DIGITS, 7, jitter=True, **kw))
    assert not np.array_equal(a, b)
    # the same digit on the same path, shifted by at most a pixel: the same ink in every frame
    np.testing.assert_array_equal(a.sum(axis=(2, 3), dtype=np.int64), b.sum(axis=(2, 3), dtype=np.int64))


def test_frames_are_digits_at_their_positions_combined_with_max():
    vid, traj, which = data.generate_moving_mnist(DIGITS, 4, seq_len=5, seed=1, return_trajectories=True)
    for n in range(4):
        for t in range(5):
            ref = np.zeros((64, 64), np.uint8)
            for d in range(2):
                r, c = traj[n, d, t]
                ref[r:r + 28, c:c + 28] = np.maximum(ref[r:r + 28, c:c + 28], DIGITS[which[n, d]])
            np.testing.assert_array_equal(vid[n, t], ref)


def test_generator_rejects_bad_digits():
    with pytest.raises(ValueError, match="28, 28"):
        data.generate_moving_mnist(np.zeros((3, 20, 20), np.uint8), 2)


def test_pipelines_shift_by_one_frame():
    ds = data.train_dataset(DIGITS, batch_size=2, seq_len=5, seed=0)
    x, y = next(iter(ds))
    assert x.shape == (2, 4, 64, 64, 1) and y.shape == (2, 4, 64, 64, 1)
    np.testing.assert_array_equal(np.asarray(x)[:, 1:], np.asarray(y)[:, :-1])
    v = data.validation_videos(DIGITS, 3, seq_len=5, seed=0)
    np.testing.assert_array_equal(v, data.validation_videos(DIGITS, 3, seq_len=5, seed=0))
    xs, ys = next(iter(data.fixed_dataset(v, 3)))
    np.testing.assert_allclose(np.asarray(ys)[..., 0], v[:, 1:] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(xs)[..., 0], v[:, :-1] / 255.0, rtol=1e-6)


def test_stream_batches_depend_on_the_step_only():
    """A resumed run continues the stream: batch k is the same whatever step the
    stream was started from, in the tf.data and the NumPy pipelines."""
    b3 = data.train_batch(DIGITS, 3, batch_size=2, seq_len=5, seed=0)
    np.testing.assert_array_equal(b3, data.train_batch(DIGITS, 3, batch_size=2, seq_len=5, seed=0))
    assert not np.array_equal(b3, data.train_batch(DIGITS, 4, batch_size=2, seq_len=5, seed=0))
    assert not np.array_equal(b3, data.train_batch(DIGITS, 3, batch_size=2, seq_len=5, seed=0, worker=1))
    it = iter(data.train_dataset(DIGITS, batch_size=2, seq_len=5, seed=0, start_step=2))
    next(it)
    x, y = next(it)  # step 3
    np.testing.assert_allclose(np.asarray(x)[..., 0], b3[:, :-1] / 255.0, rtol=1e-6)
    gen = data.train_batches(DIGITS, batch_size=2, seq_len=5, seed=0, start_step=3)
    xn, yn = next(gen)
    assert xn.dtype == np.float32 and xn.shape == (2, 4, 64, 64, 1)
    np.testing.assert_allclose(xn[..., 0], b3[:, :-1] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(yn[..., 0], b3[:, 1:] / 255.0, rtol=1e-6)
