"""Bad input, table-driven, over every entry point: one `error:` line, exit code 2,
and nothing already written is touched."""

import importlib.util
import os

import numpy as np
import pytest

import eda
import evaluate
import predict
import train
from anomaly import calibrate as a_calibrate
from anomaly import detect as a_detect
from anomaly import evaluate as a_evaluate
from anomaly import footage as a_footage
from anomaly import synthetic as a_synthetic
from anomaly import train as a_train


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist_dir):
    """Valid and broken inputs, made once."""
    d = tmp_path_factory.mktemp("bad")
    from anomaly.detector import Detector
    from anomaly.features import FeatureConfig
    from anomaly.config import AEConfig
    from anomaly.model import build_autoencoder
    from anomaly.synthetic import crowd_clip
    from anomaly.video import write_labels
    from anomaly.video import write_video
    from config import ModelConfig
    from model import build_model

    f = {"mnist": mnist_dir, "dir": str(d)}
    f["ckpt"] = str(d / "model.keras")
    build_model(ModelConfig(filters=(2, 2, 2), patch_size=4)).save(f["ckpt"])
    (d / "garbage.keras").write_bytes(b"PK\x03\x04 not really a zip")
    f["garbage_ckpt"] = str(d / "garbage.keras")
    (d / "trunc.keras").write_bytes(open(f["ckpt"], "rb").read()[:2000])
    f["trunc_ckpt"] = str(d / "trunc.keras")
    import zipfile

    with zipfile.ZipFile(d / "zip.keras", "w") as z:  # a zip, but not a Keras archive
        z.writestr("notes.txt", "x")
    f["zip_ckpt"] = str(d / "zip.keras")
    np.save(str(d / "empty_seq.npy"), np.zeros((20, 0, 64, 64), np.uint8))
    f["empty_npy"] = str(d / "empty_seq.npy")
    np.save(str(d / "no_frames.npy"), np.zeros((0, 64, 64), np.uint8))
    f["no_frames_npy"] = str(d / "no_frames.npy")
    empty = d / "empty_videos"
    empty.mkdir()
    for name in ("a", "b"):
        (empty / f"{name}.mp4").write_bytes(b"")
        (empty / f"{name}.labels.txt").write_text("0\n")
    f["empty_video"] = str(empty / "a.mp4")
    f["empty_videos"] = str(empty / "*.mp4")
    good = d / "seq.npy"
    np.save(str(good), np.zeros((20, 2, 64, 64), np.uint8))
    f["npy"] = str(good)
    (d / "trunc.npy").write_bytes(good.read_bytes()[:500])
    f["trunc_npy"] = str(d / "trunc.npy")
    np.save(str(d / "float.npy"), np.zeros((20, 2, 64, 64), np.float32))
    f["float_npy"] = str(d / "float.npy")
    np.save(str(d / "nan.npy"), np.full((4, 64, 64), np.nan, np.float32))
    f["nan_npy"] = str(d / "nan.npy")
    bad_mnist = d / "bad_mnist"
    bad_mnist.mkdir()
    (bad_mnist / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 truncated gzip")
    f["bad_mnist"] = str(bad_mnist)
    (d / "a_file").write_text("x")
    f["under_file"] = str(d / "a_file" / "out")  # cannot be created: its parent is a file
    v, lab = crowd_clip(0, frames=12, size=32)
    f["video"] = write_video(str(d / "clip.mp4"), v)
    write_labels(str(d / "clip.labels.txt"), lab)
    (d / "junk.mp4").write_bytes(b"\x00" * 300)
    f["junk_video"] = str(d / "junk.mp4")
    (d / "bad.labels.txt").write_text("0\n7\n")
    f["bad_labels"] = str(d / "bad.labels.txt")
    vids = d / "unlabelled"
    vids.mkdir()
    write_video(str(vids / "x.mp4"), v)
    f["unlabelled"] = str(vids / "*.mp4")
    cfg = AEConfig(encoder=(2,), decoder=(2,), patch_size=4, window=4, frame_size=16)
    Detector.save(str(d / "det"), build_autoencoder(cfg),
                  {"features": FeatureConfig(frame_size=16).to_dict(),
                   "normalizer": {"mean": [0, 0, 0], "std": [1, 1, 1]}, "window": 4, "stride": 1,
                   "threshold": 1.0, "percentile": 95})
    f["det"] = str(d / "det")
    import json
    import shutil

    good_json = json.load(open(d / "det" / "detector.json"))
    for name, change in (("det_mistyped", {"window": "four"}), ("det_unknown", {"windw": 4}),
                         ("det_no_threshold", {"threshold": None}), ("det_bad_score", {"score": "median"}),
                         ("det_dis_flow", {"features": {**good_json["features"], "flow": "dis"}})):  # removed option
        shutil.copytree(d / "det", d / name)
        broken = {k: v for k, v in {**good_json, **change}.items() if v is not None}
        (d / name / "detector.json").write_text(json.dumps(broken))
        f[name] = str(d / name)
    shutil.copytree(d / "det", d / "det_corrupt_model")
    (d / "det_corrupt_model" / "ae.keras").write_bytes(b"PK\x03\x04 not a model")
    f["det_corrupt_model"] = str(d / "det_corrupt_model")
    shutil.copytree(d / "det", d / "det_foreign_net")
    shutil.copy(f["ckpt"], d / "det_foreign_net" / "ae.keras")  # a predictor where the autoencoder belongs
    f["det_foreign_net"] = str(d / "det_foreign_net")
    import keras

    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    dense(np.zeros((1, 4), np.float32))
    f["dense_ckpt"] = str(d / "dense.keras")
    dense.save(f["dense_ckpt"])
    shutil.copytree(d / "det", d / "det_not_json")
    (d / "det_not_json" / "detector.json").write_text("{window: 4")
    f["det_not_json"] = str(d / "det_not_json")
    return f


SMOKE = ["--preset", "smoke", "--steps-per-epoch", "1", "--val-sequences", "2"]
TRAIN = SMOKE + ["--mnist", "{mnist}", "--out", "{out}"]
TRAIN_DET = ["--videos", "{video}", "--out", "{out}"]
# Broken detector folders (made by `files`) and what streaming from one must say.
BROKEN_DETECTORS = [("det_mistyped", "window must be"), ("det_unknown", "unknown keys"),
                    ("det_no_threshold", "missing keys"), ("det_bad_score", "score must be"),
                    ("det_corrupt_model", "exists but is not a readable Keras archive"),
                    ("det_not_json", "not a readable"), ("det_dis_flow", "DIS optical flow, which was removed")]

# train.py flags with a bad value whose error must name the flag itself.
TRAIN_FLAGS_NAMED = [("--val-rollout-sequences", "-1"), ("--bn-momentum", "2"), ("--time-budget-min", "-5"),
                     ("--patch-size", "3"), ("--filters", "8,0,8"), ("--filters", "8,x,8"), ("--context-frames", "0")]
# train.py flags with a bad value, and what the error must name.
TRAIN_FLAG_CASES = [
    (["--bogus"], "unrecognized"),
    (["--batch-size", "0"], "--batch-size must be positive and finite, got 0"),
    (["--lr", "inf"], "--lr must be positive and finite, got inf"),
    (["--gdl-weight", "nan"], "loss weights must be finite"),
    (["--seq-len", "1"], "--seq-len must be >= 2, got 1"),
    (["--gdl-weight", "-1"], "'--gdl-weight': -1.0"),
    (["--filters", "8,8"], "got '8,8'"),
    (["--strategy", "multiworker"], "TF_CONFIG"),
    (["--feedback-ramp", "true"], "--feedback-passes"),
    (["--lr-schedule", "cosine", "--total-steps", "4", "--warmup-steps", "4"], "--warmup-steps"),
    (["--subpixel-jitter", "maybe"], "got 'maybe'"),
    (["--subpixel-jitter", "1.5"], r"--subpixel-jitter must be a width in \[0, 1\], got 1\.5"),
    *[([flag, value], flag) for flag, value in TRAIN_FLAGS_NAMED],
]

CASES = [
    # (entry point, argv template, what the message must name)
    (train.main, SMOKE + ["--mnist", "{dir}/nope", "--out", "{out}"], "does not exist"),
    (train.main, SMOKE + ["--mnist", "{bad_mnist}", "--out", "{out}"], "cannot read"),
    (train.main, SMOKE + ["--mnist", "{mnist}", "--out", "{under_file}"], "a_file"),
    *[(train.main, TRAIN + argv, msg) for argv, msg in TRAIN_FLAG_CASES],
    (evaluate.main, ["--checkpoint", "{dense_ckpt}", "--out", "{out}"], "not a video predictor"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--mnist", "{mnist}", "--subpixel-offset", "1.5", "--out", "{out}"],
     r"--subpixel-offset must be in \[0, 1\), got 1.5"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{npy}", "--subpixel-offset", "0.5", "--out", "{out}"],
     "applies to a generated set"),
    (a_footage.main, ["--video", "{dir}/none.avi", "--out", "{out}"], "no such file"),
    (a_footage.main, ["--video", "{video}", "--out", "{out}"], "needs vtest.avi's 795"),
    (a_footage.main, ["--video", "{video}", "--out", "{under_file}"], "a_file"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{npy}", "--horizon", "15", "--out", "{out}"],
     "at least 25 frames"),
    (predict.main, ["{video}", "--checkpoint", "{dense_ckpt}", "--out", "{out}"], "not a video predictor"),
    (train.main, TRAIN + ["--init", "{dense_ckpt}"], "not a video predictor"),
    (a_detect.main, ["--model", "{det_foreign_net}", "--source", "{video}", "--out", "{out}"],
     "not this detector's network"),
    (evaluate.main, ["--checkpoint", "{dir}/none.keras", "--out", "{out}"], "not found"),
    (evaluate.main, ["--checkpoint", "{garbage_ckpt}", "--out", "{out}"], "exists but is not a readable Keras archive"),
    (evaluate.main, ["--checkpoint", "{trunc_ckpt}", "--out", "{out}"], "exists but is not a readable Keras archive"),
    (evaluate.main, ["--checkpoint", "{zip_ckpt}", "--out", "{out}"], "cannot load it as a Keras model"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{empty_npy}", "--out", "{out}"], "holds no sequences"),
    (eda.main, ["--data", "{empty_npy}", "--out", "{out}"], "holds no sequences"),
    (predict.main, ["{no_frames_npy}", "--checkpoint", "{ckpt}", "--out", "{out}"], "0 frame"),
    (predict.main, ["{empty_video}", "--checkpoint", "{ckpt}", "--out", "{out}"], "no frames"),
    (a_train.main, ["--videos", "{empty_videos}", "--out", "{out}"], "no frames"),
    (a_detect.main, ["--model", "{det}", "--source", "{empty_video}", "--out", "{out}"], "no frames"),
    (a_evaluate.main, ["--model", "{det}", "--videos", "{empty_videos}", "--out", "{out}"], "no frames"),
    (a_calibrate.main, ["--model", "{det}", "--videos", "{empty_videos}"], "no frames"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{trunc_npy}", "--out", "{out}"], "not a readable"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{float_npy}", "--out", "{out}"], r"\(20, N, 64, 64\)"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{npy}", "--out", "{under_file}"], "a_file"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--mnist", "{bad_mnist}", "--out", "{out}"], "cannot read"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--frobnicate"], "unrecognized"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{npy}", "--protocols", "rollout", "--context", "15",
                     "--out", "{out}"], "at least 25 frames"),
    (predict.main, ["{nan_npy}", "--checkpoint", "{ckpt}", "--out", "{out}"], "NaN"),
    (predict.main, ["{trunc_npy}", "--checkpoint", "{ckpt}", "--out", "{out}"], "not a readable"),
    (predict.main, ["{junk_video}", "--checkpoint", "{ckpt}", "--out", "{out}"], "no frames"),
    (predict.main, ["{npy}", "--checkpoint", "{ckpt}", "--out", "{out}"], "must be"),  # 4-D, 64 channels
    (predict.main, ["{video}", "--checkpoint", "{garbage_ckpt}", "--out", "{out}"], "not a readable Keras archive"),
    (predict.main, ["{video}", "--checkpoint", "{ckpt}", "--out", "{under_file}"], "a_file"),
    (predict.main, ["{video}", "--checkpoint", "{ckpt}", "--frames", "0", "--out", "{out}"], "--frames"),
    (eda.main, ["--data", "{float_npy}", "--out", "{out}"], r"\(20, N, 64, 64\)"),
    (eda.main, ["--data", "{dir}/none.npy", "--out", "{out}"], "no such file"),
    (eda.main, ["--mnist", "{bad_mnist}", "--out", "{out}"], "cannot read"),
    (eda.main, ["--mnist", "{mnist}", "--sequences", "2", "--out", "{under_file}"], "a_file"),
    (eda.main, ["--mnist", "{mnist}", "--wat"], "unrecognized"),
    (a_train.main, ["--videos", "{dir}/nothing*.mp4", "--out", "{out}"], "matches no file"),
    (a_train.main, ["--videos", "{junk_video}", "--out", "{out}"], "no frames"),
    (a_train.main, TRAIN_DET + ["--percentile", "120"], "percentile"),
    (a_train.main, TRAIN_DET + ["--scale-percentile", "120"], "--scale-percentile"),
    (a_train.main, TRAIN_DET + ["--seq-len", "64"], "too short"),
    (a_train.main, ["--out", "{out}"], "required"),
    (a_train.main, TRAIN_DET + ["--smooth", "0"], "--smooth"),
    (a_train.main, TRAIN_DET + ["--border", "32"], "--border"),
    (a_train.main, TRAIN_DET + ["--mog2-learning-rate", "2"], "--mog2-learning-rate"),
    (a_train.main, TRAIN_DET + ["--seq-len", "4", "--strategy", "multiworker"],
     "TF_CONFIG"),
    (a_detect.main, ["--model", "{dir}", "--source", "{video}", "--out", "{out}"], "not a detector"),
    (a_detect.main, ["--model", "{det}", "--source", "{junk_video}", "--out", "{out}"], "no frames"),
    (a_detect.main, ["--model", "{det}", "--source", "{video}", "--labels", "{bad_labels}", "--out", "{out}"],
     "0 or 1"),
    (a_detect.main, ["--model", "{det}", "--source", "{video}", "--out", "{under_file}"], "a_file"),
    (a_detect.main, ["--model", "{det}", "--source", "{video}", "--smooth", "0", "--out", "{out}"], "--smooth"),
    *[(a_detect.main, ["--model", "{%s}" % name, "--source", "{video}", "--out", "{out}"], msg)
      for name, msg in BROKEN_DETECTORS],
    (a_evaluate.main, ["--model", "{det_unknown}", "--videos", "{unlabelled}", "--out", "{out}"], "unknown keys"),
    (a_evaluate.main, ["--model", "{det}", "--videos", "{video}", "--videos", "{video}", "--out", "{out}"],
     "given twice"),
    (a_train.main, TRAIN_DET + ["--augment", "-1"], "--augment"),
    (a_train.main, TRAIN_DET + ["--objective", "reconstruct", "--scale-percentile", "95"],
     "--scale-percentile 95.0 applies to --objective motion or fused only"),
    (a_train.main, TRAIN_DET + ["--objective", "motion", "--seq-len", "8"], "--seq-len 8 applies to --objective reconstruct"),
    (a_train.main, TRAIN_DET + ["--lr", "0"], "--lr"),
    (a_train.main, TRAIN_DET + ["--lr", "inf"], "--lr must be a finite number, got inf"),
    (a_train.main, TRAIN_DET + ["--still-speed", "nan"], "--still-speed must be a finite number, got nan"),
    (a_train.main, TRAIN_DET + ["--pose-weights", "w.pt"], "--pose-weights applies to --density yolo-pose only"),
    *([(a_train.main, TRAIN_DET + ["--density", "yolo-pose"], "--density yolo-pose needs Ultralytics")]
      if importlib.util.find_spec("ultralytics") is None else []),
    *([(a_train.main, TRAIN_DET + ["--density", "hog"], "--density hog needs OpenCV's HOGDescriptor")]
      if not hasattr(importlib.import_module("cv2"), "HOGDescriptor") else []),
    (a_train.main, ["--videos", "{video}", "--out", "{under_file}"], "a_file"),
    (a_calibrate.main, ["--model", "{det}", "--videos", "{video}", "--percentile", "120"], "percentile"),
    (a_calibrate.main, ["--model", "{det}", "--videos", "{video}", "--scale-percentile", "0"], "--scale-percentile"),
    (a_calibrate.main, ["--model", "{det}", "--videos", "{video}", "--scale-percentile", "99"], "is an autoencoder"),
    (a_calibrate.main, ["--model", "{det_mistyped}", "--videos", "{video}"], "window must be"),
    (a_calibrate.main, ["--model", "{det}", "--videos", "{junk_video}"], "no frames"),
    (a_synthetic.main, ["--out", "{out}", "--frames", "0"], "--frames must be"),
    (a_synthetic.main, ["--out", "{out}", "--lanes-each", "-1"], "--lanes-each"),
    (a_evaluate.main, ["--model", "{det}", "--videos", "{dir}/none*.mp4", "--out", "{out}"], "matches no file"),
    (a_evaluate.main, ["--model", "{det}", "--videos", "{unlabelled}", "--out", "{out}"], "no labels file"),
    (a_evaluate.main, ["--model", "{det}", "--videos", "{unlabelled}", "--border", "-1", "--out", "{out}"],
     "--border"),
    # a seed outside [0, 2**32 - 1] is refused by every entry point that takes one, before any work
    (train.main, TRAIN + ["--seed", "-1"], r"--seed: must be an integer in \[0, 4294967295\], got '-1'"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--mnist", "{mnist}", "--seed", "-1", "--out", "{out}"], "--seed"),
    (eda.main, ["--mnist", "{mnist}", "--seed", "4294967296", "--out", "{out}"], "--seed"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{npy}", "--horizon", "0", "--out", "{out}"],
     "--horizon must be >= 1, got 0"),
    (evaluate.main, ["--checkpoint", "{ckpt}", "--data", "{npy}", "--context", "-2", "--out", "{out}"],
     "--context must be >= 1, got -2"),
    (a_train.main, TRAIN_DET + ["--seed", "-1"], "--seed"),
    (a_synthetic.main, ["--out", "{out}", "--seed", "-1"], "--seed"),
    (a_footage.main, ["--video", "{video}", "--seed", "1.5", "--out", "{out}"], "got '1.5'"),
    (a_detect.main, ["--model", "{det}", "--source", "{video}", "--threshold", "nan", "--out", "{out}"],
     "--threshold must be a finite number, got nan"),
    (a_detect.main, ["--model", "{det}", "--source", "{video}", "--stride", "0", "--out", "{out}"],
     "--stride must be >= 1, got 0"),
    (a_evaluate.main, ["--model", "{det}", "--videos", "{video}", "--normal-videos", "{dir}/none*.mp4", "--out",
                       "{out}"], "--normal-videos .* matches no file"),
    (a_calibrate.main, ["--model", "{det}", "--videos", "{video}", "--labelled-videos", "{dir}/none*.mp4"],
     "--labelled-videos .* matches no file"),
    (a_calibrate.main, ["--model", "{det}", "--videos", "{video}", "--percentile", "0"],
     r"--percentile must be in \(0, 100\), got 0"),
]


@pytest.mark.parametrize("main,argv,msg", CASES,
                         ids=[f"{m.__module__}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_bad_input(main, argv, msg, files, tmp_path, capsys):
    import re

    out = tmp_path / "out"
    out.mkdir()
    keep = out / "earlier_result.txt"  # whatever fails, what is already there stays
    keep.write_text("earlier result")
    args = [a.format(out=str(out), **files) for a in argv]
    code = None
    try:
        code = main(args)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert re.search(msg, lines[0]), lines[0]
    assert keep.read_text() == "earlier result"
    assert sorted(os.listdir(out)) == ["earlier_result.txt"]


def test_corrupt_npz_is_a_data_error(tmp_path):
    import data

    p = tmp_path / "mnist.npz"
    p.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(data.DataError, match="not a readable mnist.npz"):
        data.load_mnist_digits(str(p))
