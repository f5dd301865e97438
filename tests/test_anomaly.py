import json
import os

import numpy as np
import pytest

from anomaly import scoring
from anomaly.cells import percentile_threshold, window_starts, windows
from anomaly.detector import Detector, ReconstructionDetector
from anomaly.features import FeatureConfig, FeatureExtractor, KeypointDensity, Normalizer, clip_features
from anomaly.config import AEConfig
from anomaly.model import build_autoencoder
from anomaly.synthetic import crowd_clip
from anomaly.video import read_labels, write_labels
from anomaly.video import VideoError, expand_videos, read_video, write_video

S = 16


def _blob_frames(shift=2, n=2, size=64):
    """A textured bright square that moves `shift` px right per frame."""
    rng = np.random.default_rng(0)
    tex = (rng.random((20, 20)) * 155 + 100).astype(np.uint8)
    frames = np.zeros((n, size, size), np.uint8)
    for t in range(n):
        frames[t, 20:40, 16 + t * shift:36 + t * shift] = tex
    return frames


def test_feature_shapes_and_flow_sign():
    cfg = FeatureConfig(frame_size=64)
    f = clip_features(_blob_frames(shift=2), cfg)
    assert f.shape == (2, 64, 64, 3) and f.dtype == np.float32
    np.testing.assert_array_equal(f[0, ..., :2], 0)  # no flow for the first frame
    inside = f[1, 24:36, 22:34]
    assert np.median(inside[..., 0]) == pytest.approx(2.0, abs=0.5)  # x: rightwards, 2 px
    assert abs(np.median(inside[..., 1])) < 0.5
    mirrored = np.ascontiguousarray(_blob_frames(shift=2)[:, :, ::-1])  # the same clip moving left
    assert np.median(clip_features(mirrored, cfg)[1, 24:36, 30:42, 0]) == pytest.approx(-2.0, abs=0.5)
    from cli import InputError

    with pytest.raises(InputError, match="DIS optical flow, which was removed.*retrain"):  # an older folder's choice
        clip_features(_blob_frames(shift=2), FeatureConfig(frame_size=64, flow="dis"))


def test_density_and_keypoint_adapter():
    fake = lambda frame: np.array([[32.0, 16.0], [8.0, 48.0]])  # (x, y) in a 64x64 frame
    cfg = FeatureConfig(frame_size=S, density="keypoints", blur=1.0)
    ex = FeatureExtractor(cfg, detector=fake)
    f = ex(np.zeros((64, 64, 3), np.uint8))
    heat = f[..., 2]
    assert heat.shape == (S, S)
    assert np.unravel_index(np.argmax(heat), heat.shape) in [(4, 8), (12, 2)]
    assert heat[4, 8] == pytest.approx(heat[12, 2], rel=1e-2) and heat[4, 8] == pytest.approx(1.0, rel=0.1)
    boxes = KeypointDensity(lambda fr: np.array([[28.0, 12.0, 36.0, 20.0]]), cfg)
    hb = boxes(None, np.zeros((64, 64, 3), np.uint8))
    assert np.unravel_index(np.argmax(hb), hb.shape) == (4, 8)
    mog = clip_features(np.stack([np.zeros((64, 64), np.uint8)] * 5 + [_blob_frames(n=1)[0]]),
                        FeatureConfig(frame_size=64))
    assert mog[-1, 30, 25, 2] > mog[-1, 5, 5, 2]  # the new object lights up the density map


def test_hog_people_boxes_and_the_opencv_it_needs():
    import cv2

    from anomaly.features import HogPeopleDetector
    from cli import InputError

    if not hasattr(cv2, "HOGDescriptor"):  # OpenCV 5: one line saying which OpenCV has it
        with pytest.raises(InputError, match="--density hog needs OpenCV's HOGDescriptor.*opencv-python-headless<5"):
            FeatureExtractor(FeatureConfig(frame_size=S, density="hog"))
    else:
        assert HogPeopleDetector()(np.zeros((128, 64, 3), np.uint8)).shape == (0, 4)

    class FakeHog:  # OpenCV returns (x, y, w, h) boxes
        def detectMultiScale(self, frame, **kw):
            return np.array([[10, 20, 30, 40]]), np.array([1.0])

    det = HogPeopleDetector.__new__(HogPeopleDetector)
    det.hog = FakeHog()
    det.height = 64
    np.testing.assert_array_equal(det(np.zeros((64, 80, 3), np.uint8)), [[10, 20, 40, 60]])  # (x1, y1, x2, y2)
    det.height = 128  # searched at twice the size: boxes come back in the frame's pixels
    np.testing.assert_array_equal(det(np.zeros((64, 80, 3), np.uint8)), [[5, 10, 20, 30]])


def _pose_result(xy):
    """What Ultralytics' pose model returns for one frame, as far as the adapter
    reads it: `result.keypoints.xy.cpu().numpy()`, (people, 17, 2) pixels."""
    import types

    return types.SimpleNamespace(keypoints=types.SimpleNamespace(
        xy=types.SimpleNamespace(cpu=lambda: types.SimpleNamespace(numpy=lambda: xy))))


def test_yolo_pose_keypoints_searched_at_1280_and_a_weights_file_it_cannot_load(monkeypatch):
    import sys
    import types

    from anomaly.features import YoloPoseDetector
    from cli import InputError

    calls = []

    class FakeYolo:
        def __init__(self, weights):
            if weights == "missing.pt":
                raise FileNotFoundError(weights)

        def __call__(self, frame, **kw):  # two people of 17 keypoints each
            calls.append(kw)
            return [_pose_result(np.arange(68, dtype=np.float32).reshape(2, 17, 2))]

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=FakeYolo))
    points = YoloPoseDetector("w.pt", conf=0.4)(np.zeros((288, 384, 3), np.uint8))
    assert points.shape == (34, 2) and points[1].tolist() == [2.0, 3.0]  # every person's keypoints, (x, y)
    assert calls == [{"conf": 0.4, "imgsz": 1280, "verbose": False}]  # small people: searched at 1280, not 640
    with pytest.raises(InputError, match="the weights missing.pt could not be loaded.*--density mog2"):
        YoloPoseDetector("missing.pt")
    # the weights a detector's features were made with are recorded, and a stream rebuilds them
    cfg = FeatureConfig(frame_size=S, density="keypoints", pose_weights="missing.pt")
    assert FeatureConfig(**cfg.to_dict()) == cfg and "pose_weights" not in FeatureConfig().to_dict()
    with pytest.raises(InputError, match="the weights missing.pt could not be loaded"):
        FeatureExtractor(cfg)
    with pytest.raises(InputError, match="pose_weights 'w.pt' applies to the keypoints density only, not 'mog2'"):
        FeatureConfig(pose_weights="w.pt")


def test_a_yolo_pose_detector_records_its_weights_and_streams_with_them(tmp_path, monkeypatch, tiny_detector):
    """--density yolo-pose end to end, Ultralytics faked: the weights file the
    features were made with is recorded by its absolute path (the folder works
    from any folder) and the loaded detector builds its keypoints with it."""
    import sys
    import types

    from anomaly.fusion import load_detector
    from anomaly.video import read_video

    loaded = []

    class FakeYolo:
        def __init__(self, weights):
            loaded.append(weights)

        def __call__(self, frame, **kw):  # one person, 17 keypoints at the frame's centre
            h, w = frame.shape[:2]
            return [_pose_result(np.tile(np.float32([[w / 2, h / 2]]), (1, 17, 1)))]

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=FakeYolo))
    monkeypatch.chdir(tmp_path)
    open("pose.pt", "wb").close()
    weights = os.path.join(os.getcwd(), "pose.pt")
    data, out = tiny_detector(dict(frames=30, n_train=2, n_test_normal=1, n_panic=0, n_runner=0, n_val_each=0,
                                   lanes_train=0, lanes_each=0, lanes_test2_each=0),
                              ["--objective", "motion", "--density", "yolo-pose", "--pose-weights", "pose.pt"])
    meta = json.load(open(os.path.join(out, "detector.json")))
    assert meta["features"]["density"] == "keypoints" and meta["features"]["pose_weights"] == weights
    assert set(loaded) == {weights}
    loaded.clear()
    monkeypatch.chdir(data)  # a stream started from another folder
    scores = load_detector(out).score_frames(read_video(os.path.join(data, "test", "normal_00.mp4")))
    assert loaded and set(loaded) == {weights} and np.isfinite(scores).any()


def test_normalizer():
    a = np.zeros((2, 4, 4, 3), np.float32)
    a[1] = 2.0
    n = Normalizer.fit([a])
    np.testing.assert_allclose(n.mean, [1, 1, 1])
    np.testing.assert_allclose(n.std, [1, 1, 1])
    np.testing.assert_allclose(n(a)[1], 1.0)


def test_threshold_calibration_on_toy_errors():
    errs = np.arange(1, 101, dtype=float)
    assert percentile_threshold(errs, 95) == pytest.approx(95.05)
    assert percentile_threshold(np.r_[errs, np.nan], 50) == pytest.approx(50.5)
    with pytest.raises(ValueError, match="no scored frames"):
        percentile_threshold([np.nan], 95)


def test_part_scale_and_scaled_max_by_hand():
    from anomaly.cells import percentile_scale, scaled_max

    # the median of 1..4 with a NaN left out; a part that never fires gets the floor
    assert percentile_scale([1.0, 2.0, np.nan, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile_scale(np.zeros(5), 99) == 1e-6
    with pytest.raises(ValueError, match="no scored frames"):
        percentile_scale([np.nan], 99)
    # frame 0: max(1/2, 4/4) = 1; frame 1: max(3/2, 1/4) = 1.5; frame 2 has no score yet
    got = scaled_max([[1.0, 4.0], [3.0, 1.0], [np.nan, 1.0]], [2.0, 4.0])
    np.testing.assert_allclose(got[:2], [1.0, 1.5])
    assert np.isnan(got[2])


def test_score_reductions_by_hand():
    from anomaly.cells import reduce_error_map

    err = np.zeros((2, 16, 16))
    err[1, :2, :2] = 4.0  # one 2x2 cell (16 // 8 = 2 px cells) fully wrong
    np.testing.assert_allclose(reduce_error_map(err, "mean"), [0.0, 16 / 256])
    np.testing.assert_allclose(reduce_error_map(err, "local"), [0.0, 4.0])
    with pytest.raises(ValueError, match="score"):
        reduce_error_map(err, "median")


def test_border_leaves_out_the_edges_by_hand():
    from anomaly.cells import reduce_error_map

    err = np.zeros((3, 16, 16))
    err[1, 0, :] = 8.0          # the top row only: inside a 1-px border
    err[2, 3:5, 3:5] = 4.0      # one 2x2 cell of the interior grid (which starts at the border)
    np.testing.assert_allclose(reduce_error_map(err, "mean", 1), [0.0, 0.0, 16 / 196])
    np.testing.assert_allclose(reduce_error_map(err, "local", 1), [0.0, 0.0, 4.0])
    np.testing.assert_allclose(reduce_error_map(err, "local", 0), [0.0, 4.0, 1.0])  # grid from pixel 0
    with pytest.raises(ValueError, match="border"):
        reduce_error_map(err, "mean", 8)


def test_window_helpers():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    w = windows(np.arange(10)[:, None, None, None], 4, 3)
    assert w.shape == (3, 4, 1, 1, 1) and w[2, 0, 0, 0, 0] == 6


def _detector(window=4, stride=2, threshold=1.0):
    cfg = AEConfig(encoder=(4,), decoder=(4,), patch_size=4, window=window, frame_size=S)
    ae = build_autoencoder(cfg)
    meta = {"features": FeatureConfig(frame_size=S).to_dict(), "normalizer": {"mean": [0, 0, 0], "std": [1, 1, 1]},
            "window": window, "stride": stride, "threshold": threshold, "percentile": 95,
            "autoencoder": cfg.to_dict()}
    return ReconstructionDetector([ae], [meta]), ae, meta


def test_streaming_window_logic_matches_offline_scoring():
    det, _, _ = _detector(window=4, stride=2)
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(9, S, S, 3)).astype(np.float32)
    out = [det.add_features(f[..., :2], f[..., 2]) for f in raw]
    assert out[:3] == [None, None, None]
    assert all(isinstance(o, tuple) and isinstance(o[0], bool) for o in out[3:])
    streamed = np.array([np.nan] * 3 + [o[1] for o in out[3:]])
    offline = det.score_features(raw)
    np.testing.assert_allclose(streamed, offline, rtol=1e-5, equal_nan=True)
    # stride 2: frame 4 reuses frame 3's window score; frame 5 gets a new window
    assert streamed[4] == streamed[3] and streamed[5] != streamed[4]
    det.threshold = float(np.nanmax(offline)) + 1
    det.reset()
    assert not any(o[0] for o in (det.add_features(f[..., :2], f[..., 2]) for f in raw) if o)
    with pytest.raises(ValueError, match="flow must be"):
        det.add_features(np.zeros((S, S, 1)), np.zeros((S, S)))


def test_causal_max_by_hand():
    from anomaly.cells import causal_max

    s = np.array([np.nan, np.nan, 1.0, 3.0, 2.0, 0.5, 0.1])
    np.testing.assert_array_equal(causal_max(s, 2), [np.nan, np.nan, 1, 3, 3, 2, 0.5])
    np.testing.assert_array_equal(causal_max(s, 3), [np.nan, np.nan, 1, 3, 3, 3, 2])
    np.testing.assert_array_equal(causal_max(s, 1), s)


def test_smoothing_is_the_alerts_hysteresis():
    # One window score above the threshold keeps the alert open for `smooth`
    # frames; two such scores up to `smooth` frames apart make one alert.
    from anomaly.cells import causal_max
    from anomaly.scoring import onsets

    def alert(*spikes, n=30, smooth=8):
        raw = np.zeros(n)
        raw[list(spikes)] = 2.0
        return causal_max(raw, smooth) > 1.0

    assert alert(5).sum() == 8 and onsets(alert(5)) == 1
    assert onsets(alert(5, 13)) == 1 and alert(5, 13).sum() == 16
    assert onsets(alert(5, 14)) == 2


def test_streaming_with_smoothing_matches_offline_scoring():
    det, _, _ = _detector(window=4, stride=1)
    det.smooth = 3
    raw = np.random.default_rng(1).normal(size=(10, S, S, 3)).astype(np.float32)
    streamed = np.array([np.nan if o is None else o[1] for o in (det.add_features(f[..., :2], f[..., 2])
                                                                   for f in raw)])
    offline = det.score_features(raw)
    np.testing.assert_allclose(streamed, offline, rtol=1e-5, equal_nan=True)
    det.smooth = 1
    unsmoothed = det.score_features(raw)
    assert np.all(offline[3:] >= unsmoothed[3:] - 1e-9) and np.any(offline[3:] > unsmoothed[3:])
    np.testing.assert_allclose(offline[5], np.max(unsmoothed[3:6]), rtol=1e-6)


def test_streaming_local_score_with_border_matches_offline_scoring():
    det, _, _ = _detector(window=3, stride=2)
    det.score, det.border, det.smooth = "local", 2, 2
    raw = np.random.default_rng(2).normal(size=(9, S, S, 3)).astype(np.float32)
    streamed = np.array([np.nan if o is None else o[1] for o in (det.add_features(f[..., :2], f[..., 2])
                                                                   for f in raw)])
    np.testing.assert_allclose(streamed, det.score_features(raw), rtol=1e-5, equal_nan=True)
    det.border = 0
    assert not np.allclose(det.score_features(raw)[2:], streamed[2:])


def test_add_frame_runs_features():
    det, _, _ = _detector(window=2, stride=1)
    frames = _blob_frames(n=3, size=64)
    res = [det.add_frame(np.repeat(f[..., None], 3, -1)) for f in frames]
    assert res[0] is None and all(r is not None for r in res[1:])


def test_save_load_round_trip_and_ensemble(tmp_path):
    det, ae, meta = _detector()
    raw = np.random.default_rng(1).normal(size=(8, S, S, 3)).astype(np.float32)
    Detector.save(str(tmp_path / "a"), ae, meta)
    det2 = Detector.load(str(tmp_path / "a"))
    np.testing.assert_allclose(det2.score_features(raw), det.score_features(raw), rtol=1e-6, equal_nan=True)
    assert det2.threshold == 1.0 and det2.window == 4 and det2.stride == 2
    other, ae_b, meta_b = _detector(threshold=3.0)
    Detector.save(str(tmp_path / "b"), ae_b, meta_b)
    ens = Detector.load([str(tmp_path / "a"), str(tmp_path / "b")])
    assert ens.threshold == 2.0
    np.testing.assert_allclose(ens.score_features(raw),
                               (det.score_features(raw) + other.score_features(raw)) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="not a detector folder"):
        Detector.load(str(tmp_path))


def test_scoring_by_hand():
    y = np.array([0, 0, 1, 1])
    assert scoring.roc_auc([0.1, 0.4, 0.35, 0.8], y) == pytest.approx(0.75)
    assert scoring.roc_auc([1, 2, 3, 4], y) == 1.0
    assert scoring.roc_auc([1, 1, 1, 1], y) == 0.5  # ties count a half
    # ranked: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): AP = 0.5 * 1 + 0.5 * 2/3
    assert scoring.average_precision([0.1, 0.4, 0.35, 0.8], y) == pytest.approx(0.5 + 1 / 3)
    assert scoring.equal_error_rate([1, 2, 3, 4], y) == pytest.approx(0.0)
    assert scoring.equal_error_rate([0.1, 0.4, 0.35, 0.8], y) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both"):
        scoring.roc_auc([1, 2], [1, 1])


def test_synthetic_clips_and_labels(tmp_path):
    v, lab = crowd_clip(0, frames=40, size=64)
    assert v.shape == (40, 64, 64, 3) and v.dtype == np.uint8 and lab.sum() == 0
    p, lp = crowd_clip(1, frames=80, size=64, anomaly="panic", onset=30)
    assert lp[:30].sum() == 0 and lp[30:].all() and len(p) == len(lp)
    r, lr = crowd_clip(2, frames=80, size=64, anomaly="runner", onset=20)
    assert lr[:20].sum() == 0 and 5 < lr.sum() < 60
    write_labels(str(tmp_path / "x.labels.txt"), lr)
    np.testing.assert_array_equal(read_labels(str(tmp_path / "x.labels.txt")), lr)
    (tmp_path / "bad.labels.txt").write_text("0\n2\n")
    with pytest.raises(ValueError, match="0 or 1"):
        read_labels(str(tmp_path / "bad.labels.txt"))


def test_more_training_clips_leave_test_and_val_clips_unchanged(tmp_path):
    from anomaly.synthetic import make_benchmark

    kw = dict(seed=3, frames=20, size=32, n_test_normal=1, n_panic=1, n_runner=1, n_val_each=1,
              lanes_train=0, lanes_each=0)
    make_benchmark(str(tmp_path / "a"), n_train=1, **kw)
    make_benchmark(str(tmp_path / "b"), n_train=3, **kw)
    assert len(os.listdir(tmp_path / "b" / "train")) == 3
    for split in ("train/normal_00.mp4", "test/normal_00.mp4", "test/runner_00.labels.txt",
                  "val/panic_00.mp4"):
        assert (tmp_path / "a" / split).read_bytes() == (tmp_path / "b" / split).read_bytes(), split


def test_second_lanes_test_set_is_fresh_and_leaves_the_others_unchanged(tmp_path):
    from anomaly.synthetic import make_benchmark

    kw = dict(seed=3, frames=20, size=32, n_train=0, n_test_normal=0, n_panic=0, n_runner=0, n_val_each=0,
              lanes_train=0, lanes_each=1)
    make_benchmark(str(tmp_path / "a"), lanes_test2_each=0, **kw)
    make_benchmark(str(tmp_path / "b"), lanes_test2_each=2, **kw)
    assert not (tmp_path / "a" / "lanes" / "test2").exists()
    test2 = sorted(os.listdir(tmp_path / "b" / "lanes" / "test2"))
    assert len(test2) == 2 * 7 * 2 and "wrong_way_01.labels.txt" in test2  # 2 clips of 7 kinds, + labels
    for split in ("val", "test"):
        for f in os.listdir(tmp_path / "a" / "lanes" / split):
            assert (tmp_path / "a" / "lanes" / split / f).read_bytes() == \
                (tmp_path / "b" / "lanes" / split / f).read_bytes(), (split, f)
    lanes = tmp_path / "b" / "lanes"
    assert (lanes / "test2" / "normal_00.mp4").read_bytes() != (lanes / "test" / "normal_00.mp4").read_bytes()


def test_video_round_trip_and_bad_input(tmp_path):
    v, _ = crowd_clip(0, frames=10, size=64)
    path = write_video(str(tmp_path / "c.mp4"), v)
    back = read_video(path)
    assert back.shape == v.shape and np.abs(back.astype(int) - v).mean() < 10
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01" * 500)
    with pytest.raises(VideoError, match="no frames could be decoded"):
        read_video(str(tmp_path / "junk.mp4"))
    with pytest.raises(VideoError, match="no such video"):
        read_video(str(tmp_path / "none.mp4"))
    with pytest.raises(VideoError, match="matches no file"):
        expand_videos(str(tmp_path / "*.avi"))
    with pytest.raises(VideoError, match="uint8"):
        write_video(str(tmp_path / "x.mp4"), np.zeros((2, 8, 8), np.uint8))


def test_cli_train_detect_evaluate(tmp_path, capsys, tiny_detector):
    from anomaly import detect, evaluate, train

    data, out = tiny_detector(dict(frames=40, n_train=3, n_test_normal=1, n_panic=1, n_runner=1, n_val_each=0,
                                   lanes_train=2, lanes_each=1),
                              ["--seq-len", "8", "--window-stride", "4", "--augment", "1", "--objective", "reconstruct"])
    meta = json.load(open(os.path.join(out, "detector.json")))
    for k in ("features", "normalizer", "window", "threshold", "percentile", "train_loss", "val_loss", "epoch"):
        assert k in meta, k
    assert meta["val_clips"] == 1 and meta["train_clips"] == 4  # 2 clips + 2 augmented copies
    d = str(tmp_path / "detections")
    src = os.path.join(data, "test", "panic_00.mp4")
    assert detect.main(["--model", out, "--source", src, "--out", d, "--labels",
                        src.replace(".mp4", ".labels.txt")]) == 0
    rows = open(os.path.join(d, "scores.csv")).read().splitlines()
    assert rows[0] == "frame,score,is_anomaly"
    assert rows[1] == "0,," and rows[8].split(",")[1] != ""  # first scored frame = window - 1 = 7
    for f in ("scores.png", "annotated.mp4"):
        assert os.path.getsize(os.path.join(d, f)) > 0
    capsys.readouterr()
    assert detect.main(["--model", out, "--source", src, "--out", str(tmp_path / "d2"), "--threshold", "1e-9"]) == 0
    assert "warning: the median score is" in capsys.readouterr().err  # every frame far above: says why
    ev = str(tmp_path / "eval")
    assert meta["score"] == "local" and meta["border"] == 4 and meta["stride"] == 1 and meta["train_stride"] == 4
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "test", "*.mp4"), "--out", ev,
                          "--score", "mean", "--border", "0"]) == 0
    m = json.load(open(os.path.join(ev, "metrics.json")))
    base = m["baseline_mean_flow_magnitude"]
    # the model and its baselines are scored on the same frames (like with like), and the
    # pipeline's labels line up with the frames: panic and the runner are fast, so the speed ranks them
    assert (m["model"]["frames"], m["model"]["anomalous_frames"]) == (base["frames"], base["anomalous_frames"])
    assert base["anomalous_frames"] > 0 and base["roc_auc"] > 0.8, base
    # the second baseline is reduced as the model is: mean over the whole frame here, so equal to the first
    assert m["border"] == 0 and m["baseline_flow_magnitude_as_model"] == m["baseline_mean_flow_magnitude"]
    ev2 = str(tmp_path / "eval_local")
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "test", "*.mp4"), "--out", ev2]) == 0
    m2 = json.load(open(os.path.join(ev2, "metrics.json")))
    assert m2["score"] == "local" and m2["border"] == 4 and m2["stride"] == 1
    assert m2["baseline_mean_flow_magnitude"] == m["baseline_mean_flow_magnitude"]
    assert m2["baseline_flow_magnitude_as_model"] != m["baseline_flow_magnitude_as_model"]
    # the lanes scene: every kind, reported per kind, with the per-location baseline
    ev3 = str(tmp_path / "eval_lanes")
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "lanes", "test", "*.mp4"), "--out", ev3,
                          "--normal-videos", os.path.join(data, "lanes", "train", "*.mp4")]) == 0
    m3 = json.load(open(os.path.join(ev3, "metrics.json")))
    assert set(m3["per_kind"]) == {"all", "speed", "pattern", "panic", "runner", "wrong_way", "crossing",
                                   "stop", "gathering"}
    for rep in m3["per_kind"].values():
        assert set(rep) == {"model", "baseline_mean_flow_magnitude", "baseline_flow_magnitude_as_model",
                            "baseline_per_location", "baseline_per_location_mean"}
    assert m3["model"] == m3["per_kind"]["all"]["model"]
    assert detect.main(["--model", out, "--source", str(tmp_path / "missing.mp4"), "--out", d]) == 2
    from anomaly import calibrate

    before = meta["threshold"]
    assert calibrate.main(["--model", out, "--videos", os.path.join(data, "test", "normal_00.mp4"),
                           "--percentile", "50", "--score", "mean", "--border", "2", "--stride", "2"]) == 0
    meta2 = json.load(open(os.path.join(out, "detector.json")))
    assert meta2["score"] == "mean" and meta2["percentile"] == 50 and meta2["threshold"] != before
    assert meta2["border"] == 2 and Detector.load(out).border == 2
    assert meta2["stride"] == 2 and meta2["train_stride"] == 4
    assert train.main(["--videos", str(tmp_path / "nothing*.mp4"), "--out", out]) == 2


def _velocities(pos, size):
    """Per-frame displacements of tracked people, NaN where one wraps round the
    frame: (T-1, n, 2)."""
    d = np.diff(pos, axis=0)
    d[(np.abs(d) > size / 2).any(axis=-1)] = np.nan
    return d


def test_lanes_scene_keeps_its_lanes():
    size = 96
    _, lab, tr = crowd_clip(4, 60, size, layout="lanes", tracks=True)
    pos = tr["pos"]
    top = pos[0, :, 1] < size / 2
    assert lab.sum() == 0 and (pos[:, top, 1] < size / 2).all() and (pos[:, ~top, 1] >= size / 2).all()
    vx = np.nanmean(_velocities(pos, size)[..., 0], axis=0)
    assert (vx[top] > 0.3).all() and (vx[~top] < -0.3).all()  # top walks right, bottom left
    with pytest.raises(ValueError, match="layout"):
        crowd_clip(0, 5, 32, layout="rows")
    with pytest.raises(ValueError, match="anomaly"):
        crowd_clip(0, 5, 32, anomaly="riot")


def test_pattern_anomalies_move_as_they_claim():
    size, frames, onset = 96, 80, 20
    lane_dir = lambda pos: np.where(pos[0, :, 1] < size / 2, 1.0, -1.0)  # noqa: E731

    v, lab, tr = crowd_clip(3, frames, size, anomaly="wrong_way", onset=onset, layout="lanes", tracks=True)
    assert lab[:onset].sum() == 0 and lab[onset:].all()
    a, pos = tr["actors"], tr["pos"]
    vx = np.nanmean(_velocities(pos, size)[onset + 5:, :, 0], axis=0) * lane_dir(pos)
    assert 1 <= a.sum() <= 2 and (vx[a] < -0.3).all() and (vx[~a] > 0.3).all()  # against the lane, walking

    _, _, tr = crowd_clip(5, frames, size, anomaly="crossing", onset=onset, layout="lanes", tracks=True)
    a = tr["actors"]
    d = np.nanmean(_velocities(tr["pos"], size)[onset + 5:, a], axis=0)
    assert 3 <= a.sum() <= 5 and (np.abs(d[:, 1]) > 3 * np.abs(d[:, 0])).all() and (np.abs(d[:, 1]) > 0.3).all()

    v, lab, tr = crowd_clip(6, frames, size, anomaly="stop", onset=onset, layout="lanes", tracks=True)
    pos = tr["pos"]
    speed = np.hypot(*_velocities(pos, size).transpose(2, 0, 1))
    assert tr["actors"].all() and np.nanmax(speed[onset + 10:]) == 0 and np.nanmin(speed[:onset]) > 0.3
    # still drawn: the pixel at each standing body is dark (people 20-90, floor about 170)
    inside = (pos[-1, :, 0] > 3) & (pos[-1, :, 0] < size - 3) & (pos[-1, :, 1] > 3) & (pos[-1, :, 1] < size - 3)
    x, y = np.rint(pos[-1, inside]).astype(int).T
    assert inside.sum() >= 5 and (v[-1, y, x].mean(axis=-1) < 120).all()

    _, _, tr = crowd_clip(7, frames, size, anomaly="gathering", onset=onset, layout="lanes", tracks=True)
    a, pos = tr["actors"], tr["pos"]
    end = pos[-1, a]
    speed = np.hypot(*_velocities(pos, size)[-5:, a].transpose(2, 0, 1))
    assert a.sum() >= 5 and np.linalg.norm(end - end.mean(axis=0), axis=1).max() < 15 and np.nanmax(speed) == 0


def test_per_location_model_hand_checked():
    """A cell that always flowed right finds a leftward flow unlikely; the same
    leftward flow is usual in a cell that always flowed left."""
    from anomaly.location import LocationModel

    def frames(vx_a, vx_b, t=10):
        raw = np.zeros((t, 64, 64, 3), np.float32)
        raw[:, 16:24, 24:32, 0] = vx_a  # cell (2, 3)
        raw[:, 40:48, 8:16, 0] = vx_b   # cell (5, 1)
        raw[:, 16:24, 24:32, 2] = raw[:, 40:48, 8:16, 2] = 0.5
        return raw

    lm = LocationModel().fit([frames(0.5, -0.5)])
    assert lm.bins == 26 and lm.counts.shape == (8, 8, 26) and lm.counts.sum() == 10 * 64
    s = lm.surprise(frames(-0.5, -0.5, t=1))[0]
    assert s[2, 3] == pytest.approx(-np.log(1 / 36))    # never seen there: 1 / (10 + 26)
    assert s[5, 1] == pytest.approx(-np.log(11 / 36))   # seen 10 times there
    assert s[0, 0] == pytest.approx(-np.log(11 / 36))   # empty, as always
    np.testing.assert_allclose(lm.frame_scores(frames(-0.5, -0.5, t=1)), [-np.log(1 / 36)])
    np.testing.assert_allclose(lm.frame_scores(frames(0.5, -0.5, t=1)), [-np.log(11 / 36)])
    # someone standing still where people only ever walked (density, no flow): bin 1, unseen
    still = frames(0.0, -0.5, t=1)
    assert lm.motion_bins(still)[0, 2, 3] == 1 and lm.surprise(still)[0, 2, 3] == pytest.approx(-np.log(1 / 36))
    bordered = LocationModel(border=4).fit([frames(0.5, -0.5)])
    assert bordered.counts.shape[:2] == (7, 7)  # cells of 8 pixels inside a 4-pixel border
    with pytest.raises(ValueError, match="grid"):
        bordered.surprise(np.zeros((1, 32, 32, 3), np.float32))  # 6 x 6 cells


def test_kind_groups_pool_each_kind_with_the_normal_clips():
    from anomaly.evaluate import clip_kind, kind_groups

    assert clip_kind("wrong_way_03") == "wrong_way" and clip_kind("normal_00") == "normal"
    assert clip_kind("my_clip") == "my_clip"
    g = kind_groups(["normal", "panic", "runner", "stop", "normal"])
    assert g["all"] == ["normal", "panic", "runner", "stop"] and g["speed"] == ["normal", "panic", "runner"]
    assert g["stop"] == ["normal", "stop"] and "pattern" not in g  # one pattern kind: no group


def test_coord_channels_values():
    from anomaly.model import CoordChannels

    x = np.zeros((2, 3, 4, 5, 1), np.float32)
    y = np.asarray(CoordChannels()(x))
    assert y.shape == (2, 3, 4, 5, 3)
    np.testing.assert_allclose(y[0, 0, 0, :, 1], [-1, -0.5, 0, 0.5, 1], atol=1e-6)   # x along the width
    np.testing.assert_allclose(y[1, 2, :, 4, 2], [-1, -1 / 3, 1 / 3, 1], atol=1e-6)  # y along the height


def test_standing_density_channel_and_streaming_equals_offline():
    """The fourth channel is density where the flow is still; the streaming API
    (precomputed flow + heatmap) builds it exactly as the extractor does."""
    from anomaly.features import FeatureConfig, stack_features

    cfg = FeatureConfig(frame_size=4, still_speed=0.1)
    flow = np.zeros((4, 4, 2), np.float32)
    flow[0, 0] = (0.3, 0.4)          # walking: speed 0.5
    dens = np.full((4, 4), 0.5, np.float32)
    f = stack_features(flow, dens, cfg)
    assert f.shape == (4, 4, 4) and cfg.channels == 4 and FeatureConfig().channels == 3
    assert f[1, 1, 3] == pytest.approx(0.5)                   # standing: all of its density
    assert f[0, 0, 3] == pytest.approx(0.5 * np.exp(-5.0))    # walking: almost none
    np.testing.assert_array_equal(stack_features(flow, dens, FeatureConfig(frame_size=4)), f[..., :3])


def test_four_channel_detector_streams_as_it_scores_offline(tmp_path):
    """A detector with the standing-density channel: streaming from flow +
    heatmap equals offline scoring of the extractor's features, and it survives
    a save/load round trip."""
    from anomaly.features import stack_features

    fcfg = FeatureConfig(frame_size=S, still_speed=0.1)
    cfg = AEConfig(encoder=(4,), decoder=(4,), patch_size=4, window=3, frame_size=S, channels=4)
    ae = build_autoencoder(cfg)
    meta = {"features": fcfg.to_dict(), "normalizer": {"mean": [0] * 4, "std": [1] * 4},
            "window": 3, "stride": 1, "threshold": 1.0, "percentile": 95, "autoencoder": cfg.to_dict()}
    det = ReconstructionDetector([ae], [meta])
    rng = np.random.default_rng(4)
    flows = rng.normal(0, 0.2, (7, S, S, 2)).astype(np.float32)
    heat = rng.random((7, S, S)).astype(np.float32)
    raw = np.stack([stack_features(f, h, fcfg) for f, h in zip(flows, heat)])
    streamed = np.array([np.nan if o is None else o[1] for o in (det.add_features(f, h) for f, h in zip(flows, heat))])
    np.testing.assert_allclose(streamed, det.score_features(raw), rtol=1e-5, equal_nan=True)
    Detector.save(str(tmp_path / "d4"), ae, meta)
    back = Detector.load(str(tmp_path / "d4"))
    assert back.feature_cfg.channels == 4
    np.testing.assert_allclose(back.score_features(raw), det.score_features(raw), rtol=1e-5, equal_nan=True)


def test_detector_config_round_trip_and_older_folders():
    """detector.json is a DetectorConfig: a round trip is exact, unknown keys are
    refused, and the shipped folders (written with the older field names
    image_size and patch) still load."""
    from anomaly.config import DetectorConfig
    from cli import InputError

    root = os.path.join(os.path.dirname(__file__), "..", "results", "anomaly")
    for folder in ("model", os.path.join("lanes", "model")):
        path = os.path.join(root, folder, "detector.json")
        raw = json.load(open(path))
        cfg = DetectorConfig.load(path)
        assert cfg.features.frame_size == 64 and cfg.threshold == raw["threshold"]
        assert "mog2_warmup" not in raw["features"] and cfg.features.mog2_warmup == 0  # as they were trained
        assert DetectorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = json.load(open(os.path.join(root, "model", "detector.json")))
    assert "image_size" in old["features"] and "patch" in old["autoencoder"]  # the older names, on disk
    assert DetectorConfig.from_dict(old).autoencoder.patch_size == old["autoencoder"]["patch"]
    with pytest.raises(InputError, match="unknown keys"):
        DetectorConfig.from_dict({**old, "treshold": 1.0})
    with pytest.raises(InputError, match=r"features: unknown keys \['colour'\]"):
        DetectorConfig.from_dict({**old, "features": {**old["features"], "colour": True}})
    # a removed field loads at its off value (as the shipped real-footage autoencoder saved it), and a
    # folder that used it is refused with one line saying to retrain
    real = os.path.join(root, "real", "model", "reconstruct", "detector.json")
    saved = json.load(open(real))
    assert saved["autoencoder"]["coords"] is False
    assert DetectorConfig.from_dict(saved) == DetectorConfig.load(real)
    with pytest.raises(InputError, match="coords = True.*which was removed.*retrain it with python -m anomaly.train"):
        DetectorConfig.from_dict({**saved, "autoencoder": {**saved["autoencoder"], "coords": True}})


def test_scene_warnings_by_hand():
    from anomaly.detect import scene_warnings

    scores = np.array([np.nan, 6.0, 7.0, 8.0])
    assert scene_warnings(scores, 1.0, (64, 64), 64)[0].startswith("warning: the median score is 7x")
    assert scene_warnings(scores, 2.0, (64, 64), 64) == []          # median 3.5x: anomalies, maybe
    assert scene_warnings(scores, 2.0, (48, 80), 64) == [
        "note: the 80x48 frames are squeezed to 64x64 for the features (aspect ratio changed)"]


def test_renamed_flags_work_for_one_release_and_say_so(capsys):
    from anomaly import train

    cfg = train.parse_args(["--videos", "x.mp4", "--image-size", "32", "--sequence-length", "8",
                            "--score-stride", "2"])
    assert (cfg.frame_size, cfg.seq_len, cfg.stride) == (32, 8, 2)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {old} is now called {new}; the old name will be removed in the next release"
                   for old, new in (("--image-size", "--frame-size"), ("--sequence-length", "--seq-len"),
                                    ("--score-stride", "--stride"))]
    assert train.parse_args(["--videos", "x.mp4"]).frame_size == 64 and not capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    assert "--image-size" not in capsys.readouterr().out  # hidden


def test_alarm_report_by_hand():
    from anomaly.evaluate import ScoredClip, alarm_report
    from anomaly.scoring import onsets

    assert onsets(np.array([0, 1, 1, 0, 1])) == 2 and onsets(np.array([1, 0])) == 1 and onsets(np.array([])) == 0

    def clip(kind, scores, labels, fps=10.0):
        s, y = np.array(scores, float), np.array(labels, np.uint8)
        return ScoredClip(kind, {"model": s}, y, s, y, {}, fps)

    clips = [clip("normal", [0, 2, 2, 0, 2, 0] * 10, [0] * 60),  # 60 frames = 6 s, 20 alerts = 200 per minute
             clip("speedup", [0, 0, 0, 0, 2, 2], [0, 0, 1, 1, 1, 1]),  # flagged 2 frames (0.2 s) after onset
             clip("stop", [0, 0, 0, 0], [0, 0, 1, 1]),  # never flagged
             clip("crossing", [2, 2], [0, 0])]  # its labelled frames all before its first score: no onset
    r = alarm_report(clips, threshold=1.0)
    assert r["speedup"] == {"recall": 0.5, "normal_frames_flagged": 0.5, "false_alarms_per_min": 200.0,
                            "median_delay_s": pytest.approx(0.2), "missed_clips": 0, "anomalous_clips": 1}
    assert r["stop"]["recall"] == 0.0 and r["stop"]["median_delay_s"] is None and r["stop"]["missed_clips"] == 1
    assert r["all"]["recall"] == pytest.approx(2 / 6) and r["all"]["anomalous_clips"] == 2
    assert "crossing" not in r and r["all"]["missed_clips"] == 1


def test_flagged_by_part_by_hand():
    from anomaly.evaluate import ScoredClip, flagged_by_part

    def clip(kind, parts, labels):
        y = np.array(labels, np.uint8)
        parts = {k: np.array(v, float) for k, v in parts.items()}
        s = np.max(np.stack(list(parts.values())), axis=0)
        return ScoredClip(kind, {"model": s}, y, s, y, {}, 10.0, parts)

    clips = [clip("normal", {"a": [2, 0, 0, 0], "b": [2, 2, 0, 0]}, [0, 0, 0, 0]),
             clip("stop", {"a": [0, 2, 2, 0], "b": [0, 0, 2, 2]}, [0, 1, 1, 1])]
    # normal: a above 1 in 1 of 4 frames, b in 2; anomalous (labelled 1): a in 2 of 3, b in 2 of 3
    assert flagged_by_part(clips, 1.0) == {"a": {"normal_frames": 0.25, "anomalous_frames": pytest.approx(2 / 3)},
                                           "b": {"normal_frames": 0.5, "anomalous_frames": pytest.approx(2 / 3)}}
    assert flagged_by_part(clips[:1], 1.0)["a"]["anomalous_frames"] is None  # no anomalous clip
    one = clips[0]._replace(parts=None)  # a score of one part: nothing to attribute
    assert flagged_by_part([one, clips[1]], 1.0) is None


def test_operating_points_by_hand():
    from anomaly.scoring import operating_points
    from cli import InputError

    normal = [np.array([np.nan, *range(1, 11)]), np.array([10, 0, 10, 0.0])]  # 10 frames at 10/s, 4 at 4/s: 2 s
    bad = [(np.array([0, 6, 7, 1.0]), np.array([0, 1, 1, 1]))]
    mid, top = operating_points(normal, [10.0, 4.0], [50, 90], bad)
    # pooled 0 0 1 2 ... 9 10 10 10: the 50th percentile is 5.5, the 90th 10
    assert mid == {"percentile": 50.0, "threshold": 5.5, "frames_flagged": 0.5,
                   "false_alarms_per_hour": pytest.approx(3 / 2 * 3600),  # 6..10 once, 10 _ 10 _ twice, in 2 s
                   "recall": pytest.approx(2 / 3)}  # 6 and 7 of 6, 7, 1
    assert top["threshold"] == 10.0 and top["frames_flagged"] == 0 and top["false_alarms_per_hour"] == 0
    assert top["recall"] == 0 and operating_points(normal, [10.0, 4.0], [50])[0]["recall"] is None
    with pytest.raises(InputError, match="percentile"):
        operating_points(normal, [10.0, 4.0], [100])
    with pytest.raises(InputError, match="no scored frames"):
        operating_points([np.array([np.nan])], [10.0], [50])
    with pytest.raises(InputError, match="no scored anomalous"):
        operating_points(normal, [10.0, 4.0], [50], [(np.array([1.0]), np.array([0]))])
