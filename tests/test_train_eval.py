"""End to end on tiny data: train.py -> run folder -> evaluate.py -> metrics and figures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import evaluate
import model
import runio
import train
from conftest import ROOT

SMOKE = ["--preset", "smoke", "--steps-per-epoch", "1", "--val-sequences", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_dir):
    out = str(tmp_path_factory.mktemp("run"))
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", out, "--seed", "1"]) == 0
    return out


def test_train_writes_a_run_folder(run_dir):
    for f in ("model.keras", "config.json", "log.csv", "best.json", "loss_curve.png", "training_curves.png"):
        assert os.path.getsize(os.path.join(run_dir, f)) > 0, f
    assert not os.path.exists(os.path.join(run_dir, "backup"))  # finished: nothing to resume
    from config import Config

    cfg = Config.load(os.path.join(run_dir, "config.json"))
    assert cfg.preset == "smoke" and cfg.train.seed == 1 and cfg.model.causal
    header = open(os.path.join(run_dir, "log.csv")).readline().strip()
    for col in ("loss", "val_loss", "psnr", "val_ssim", "mae", "pixel_acc", "learning_rate"):
        assert col in header.split(","), col


def test_evaluate_writes_metrics_and_figures(run_dir, mnist_dir, tmp_path):
    out = str(tmp_path / "eval")
    rc = evaluate.main(["--checkpoint", os.path.join(run_dir, "model.keras"), "--mnist", mnist_dir,
                        "--sequences", "3", "--batch-size", "2", "--out", out])
    assert rc == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["data_range"] == 1.0 and m["data"]["digits"] == "MNIST test split 8500-8999"
    assert m["peak_rss_mb"] > 100
    nf = m["next_frame"]
    assert set(nf) == {"model", "copy_last_frame", "all_black"}
    assert len(nf["model"]["per_frame"]["psnr"]) == 19
    assert nf["model"]["mean"]["mse_frame"] == pytest.approx(4096 * nf["model"]["mean"]["mse"], rel=1e-6)
    ro = m["rollout_10_10"]
    assert len(ro["model"]["per_frame"]["ssim"]) == 10
    for f in ("comparison.png", "comparison.gif", "next_frame_metrics.png", "rollout.png", "rollout.gif",
              "rollout_metrics.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    import imageio.v2 as imageio

    gif = imageio.mimread(os.path.join(out, "comparison.gif"))
    assert len(gif) == 19 and gif[0].dtype == np.uint8


def test_evaluate_on_official_layout(run_dir, tmp_path):
    raw = np.zeros((20, 2, 64, 64), np.uint8)
    raw[:, :, 10:20, 10:20] = 255
    path = str(tmp_path / "mnist_test_seq.npy")
    np.save(path, raw)
    out = str(tmp_path / "o")
    assert evaluate.main(["--checkpoint", os.path.join(run_dir, "model.keras"), "--data", path,
                          "--sequences", "0", "--out", out]) == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["data"]["sequences"] == 2
    # a static square: copying the last frame is exact
    assert m["next_frame"]["copy_last_frame"]["mean"]["mse"] == 0.0


def test_the_official_file_path_scores_what_the_generator_scores(run_dir, mnist_dir, tmp_path, monkeypatch):
    """A generated test set written in the official file's layout and scored with
    --data (all its sequences by default, as papers score mnist_test_seq.npy) gives
    the numbers of the same set generated in memory; reports name files as given."""
    import data

    monkeypatch.chdir(tmp_path)
    digits = data.load_mnist_digits(mnist_dir, "test")
    data.save_moving_mnist_npy("seq.npy", data.generate_in_chunks(digits, 3, seed=[0, 3]))
    ckpt = os.path.relpath(os.path.join(run_dir, "model.keras"))
    assert evaluate.main(["--checkpoint", ckpt, "--data", "seq.npy", "--out", "official"]) == 0
    assert evaluate.main(["--checkpoint", ckpt, "--mnist", mnist_dir, "--sequences", "3", "--out", "gen"]) == 0
    a, b = (json.load(open(os.path.join(d, "metrics.json"))) for d in ("official", "gen"))
    assert a["data"] == {"source": "official mnist_test_seq.npy", "path": "seq.npy", "sequences": 3}
    assert a["checkpoint"] == ckpt
    for proto in ("next_frame", "rollout_10_10"):
        for k, v in a[proto]["model"]["mean"].items():
            assert v == pytest.approx(b[proto]["model"]["mean"][k], rel=1e-6), (proto, k)
    for name in os.listdir("official"):  # no report holds the machine's absolute paths
        if name.endswith(".json"):
            assert str(tmp_path) not in open(os.path.join("official", name)).read()


def test_rollout_feeds_forecasts_back(run_dir):
    net = model.load_predictor(os.path.join(run_dir, "model.keras"))
    ctx = np.random.default_rng(0).random((1, 3, 64, 64, 1)).astype("float32")
    r = model.rollout(net, ctx, 2)
    first = np.asarray(net(ctx, training=False))[:, -1]
    np.testing.assert_allclose(r[:, 0], first, rtol=1e-6)
    second = np.asarray(net(np.concatenate([ctx, r[:, :1]], axis=1), training=False))[:, -1]
    np.testing.assert_allclose(r[:, 1], second, rtol=1e-5, atol=1e-6)


def test_model_loads_in_a_fresh_python(run_dir):
    code = ("import sys; sys.path.insert(0, sys.argv[2]); import model, losses, metrics, keras, numpy as np;"
            "m = keras.saving.load_model(sys.argv[1]);"
            "y = m(np.zeros((1, 3, 64, 64, 1), 'float32'));"
            "assert tuple(y.shape) == (1, 3, 64, 64, 1); print('ok')")
    r = subprocess.run([sys.executable, "-c", code, os.path.join(run_dir, "model.keras"), ROOT],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_finished_run_is_not_overwritten(run_dir, mnist_dir, capsys):
    before = open(os.path.join(run_dir, "model.keras"), "rb").read()
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", run_dir]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert open(os.path.join(run_dir, "model.keras"), "rb").read() == before


def test_seed_preset_offline_stops_before_any_work(tmp_path, mnist_dir, monkeypatch, capsys):
    import keras

    def offline(*a, **k):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    out = tmp_path / "seed"
    assert train.main(["--preset", "seed", "--mnist", mnist_dir, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--vgg-weights" in err and "--perceptual-weight 0" in err
    assert not out.exists()


def test_bad_arguments_exit_cleanly(tmp_path, mnist_dir, capsys):
    assert train.main([*SMOKE, "--mnist", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert train.main([*SMOKE, "--lr", "-1", "--out", str(tmp_path / "r2")]) == 2
    assert evaluate.main(["--checkpoint", str(tmp_path / "none.keras")]) == 2
    assert "not found" in capsys.readouterr().err


def test_same_seed_same_model(tmp_path, mnist_dir):
    outs = []
    for i in range(2):
        out = str(tmp_path / f"r{i}")
        assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", out, "--seed", "7"]) == 0
        outs.append(model.load_predictor(os.path.join(out, "model.keras")).get_weights())
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_cli_help():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--preset" in r.stdout and "--mnist" in r.stdout


def test_feedback_passes_feed_forecasts_back():
    import keras

    class Half(keras.Model):
        def call(self, x, training=False):
            return 0.5 * x + 0.1

    fc = train.Forecaster(Half(), feedback_passes=2, context_frames=2)
    x = np.arange(5, dtype="float32").reshape(1, 5, 1, 1, 1)
    f = lambda v: 0.5 * v + 0.1  # noqa: E731
    y1 = f(x)
    in2 = np.concatenate([x[:, :2], y1[:, 1:4]], axis=1)
    y2 = f(in2)
    in3 = np.concatenate([x[:, :2], y2[:, 1:4]], axis=1)
    np.testing.assert_allclose(np.asarray(fc(x, training=True)), f(in3), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fc(x, training=False)), y1, rtol=1e-6)  # validation: one pass
    # the first forecast frames after the context are exact autoregressive forecasts
    out = np.asarray(fc(x, training=True))
    np.testing.assert_allclose(out[:, 2], f(f(x[:, 1])), rtol=1e-6)
    np.testing.assert_allclose(out[:, 3], f(f(f(x[:, 1]))), rtol=1e-6)


def test_cosine_schedule_hand_checked():
    from config import TrainConfig

    tr = TrainConfig(lr=1e-3, lr_schedule="cosine", total_steps=110, warmup_steps=10)
    sched = train.learning_rate(tr)
    at = lambda s: float(np.asarray(sched(s)))  # noqa: E731
    assert at(0) == pytest.approx(0.0, abs=1e-9)
    assert at(5) == pytest.approx(0.5e-3, rel=1e-4)
    assert at(10) == pytest.approx(1e-3, rel=1e-4)
    # halfway through the decay: (1 + cos(pi / 2)) / 2 = 0.5 of the way from 1% to 100%
    assert at(60) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5), rel=1e-3)
    assert at(110) == pytest.approx(1e-5, rel=1e-3)
    assert train.learning_rate(TrainConfig(lr=2e-3)) == 2e-3  # plateau: a plain float
    assert train.run_steps(TrainConfig(epochs=3, steps_per_epoch=7)) == 21


def test_feedback_ramp_share_rises_with_the_steps():
    """Scheduled sampling: at step 0 every fed frame is the true one (the pass equals
    teacher forcing); once the counter reaches the ramp, every one is a forecast."""
    import keras

    class Half(keras.Model):
        def call(self, x, training=False):
            return 0.5 * x + 0.1

    f = lambda v: 0.5 * v + 0.1  # noqa: E731
    x = np.arange(6, dtype="float32").reshape(1, 6, 1, 1, 1)
    ramp = 10**6
    fc = train.Forecaster(Half(), feedback_passes=1, context_frames=2, ramp_steps=ramp)
    np.testing.assert_allclose(np.asarray(fc(x, training=True)), f(x), rtol=1e-6)  # share 1e-6
    assert float(np.asarray(fc.steps_seen)) == 1.0
    fc.steps_seen.assign(float(ramp))
    fed = np.concatenate([x[:, :2], f(x)[:, 1:5]], axis=1)
    np.testing.assert_allclose(np.asarray(fc(x, training=True)), f(fed), rtol=1e-6)  # share 1
    np.testing.assert_allclose(np.asarray(fc(x, training=False)), f(x), rtol=1e-6)
    assert float(np.asarray(fc.steps_seen)) == ramp + 1.0  # validation calls do not count
    # halfway, about half of the fed frames are forecasts
    half = train.Forecaster(Half(), feedback_passes=1, context_frames=2, ramp_steps=2, seed=1)
    xs = np.repeat(x, 400, axis=0)
    out = np.asarray(half(xs, training=True))[:, 2:]  # step 1 of 2: share 0.5
    picked = ~np.isclose(out, f(xs)[:, 2:])
    assert 0.4 < picked.mean() < 0.6


def test_cosine_run_logs_rollout_scores_and_resumes_its_schedule(tmp_path, mnist_dir):
    out = str(tmp_path / "cos")
    args = ["--preset", "smoke", "--mnist", mnist_dir, "--out", out, "--steps-per-epoch", "2",
            "--lr-schedule", "cosine", "--total-steps", "6", "--warmup-steps", "2", "--lr", "1e-3",
            "--val-sequences", "2", "--val-rollout-sequences", "2", "--context-frames", "3",
            "--verbose", "0"]
    assert train.main([*args, "--time-budget-min", "0", "--keep-epochs"]) == 0  # stops after epoch 1
    assert train.completed_epochs(out) == 1
    assert train.main([*args, "--keep-epochs"]) == 0  # resumes: epochs 2 and 3, the schedule going on
    kept = sorted(os.listdir(os.path.join(out, "epochs")))
    assert kept == ["model_01.keras", "model_02.keras", "model_03.keras"]
    last, best = model.load_predictor(os.path.join(out, "epochs", kept[-1])), model.load_predictor(
        os.path.join(out, "model.keras"))
    if json.load(open(os.path.join(out, "best.json")))["epoch"] == 3:  # the same weights twice
        assert all(np.array_equal(a, b) for a, b in zip(last.get_weights(), best.get_weights()))

    log = runio.read_log(os.path.join(out, "log.csv"))
    assert list(log["epoch"]) == [0, 1, 2]
    # lr at the end of epochs 1..3 = schedule at steps 2, 4, 6
    expect = [1e-3, 1e-3 * (0.01 + 0.99 * 0.5), 1e-5]
    np.testing.assert_allclose(log["learning_rate"], expect, rtol=1e-3)
    assert np.all(log["val_rollout_mse_frame"] > 0) and np.all(log["val_rollout_ssim"] <= 1)
    assert "val_next_ssim" in log
    assert train.completed_epochs(out) == 0  # finished: the backup is gone


def test_overwrite_with_a_bad_init_keeps_the_finished_run(run_dir, mnist_dir, tmp_path, capsys):
    """Every check runs before anything in --out is removed: a finished run
    survives `--overwrite --init BAD` and `--overwrite --init` of another architecture."""
    before = {f: open(os.path.join(run_dir, f), "rb").read() for f in ("model.keras", "log.csv", "best.json")}
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 not a model")
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", run_dir, "--overwrite",
                       "--init", str(tmp_path / "bad.keras")]) == 2
    assert "not a readable Keras archive" in capsys.readouterr().err
    from config import ModelConfig
    from model import build_model

    other = str(tmp_path / "other.keras")
    build_model(ModelConfig(filters=(2, 2), kernel_sizes=(3, 1), patch_size=4)).save(other)
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", run_dir, "--overwrite", "--init", other]) == 2
    assert "not the same architecture" in capsys.readouterr().err
    for f, content in before.items():
        assert open(os.path.join(run_dir, f), "rb").read() == content, f


def test_a_run_killed_in_its_first_epoch_starts_again(tmp_path, mnist_dir):
    """Killed before its first epoch ended, a run leaves config.json and an empty
    log.csv (no backup yet): the same command starts it again instead of
    refusing the folder as a finished run."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "log.csv").write_text("")
    assert train.run_state(str(out)) == "new"
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", str(out)]) == 0
    assert train.run_state(str(out)) == "finished"


def test_evaluate_replaces_its_results_only_with_overwrite_and_as_one_set(run_dir, tmp_path, capsys, monkeypatch):
    """Results already in --out are kept unless --overwrite; an evaluation without
    a rollout replaces a folder's earlier rollout figures too (one consistent set);
    the default --out is under runs/, never beside a shipped model."""
    raw = np.zeros((20, 2, 64, 64), np.uint8)
    raw[:, :, 10:20, 10:20] = 255
    data_path = str(tmp_path / "seq.npy")
    np.save(data_path, raw)
    out = str(tmp_path / "o")
    args = ["--checkpoint", os.path.join(run_dir, "model.keras"), "--data", data_path, "--sequences", "0",
            "--out", out]
    assert evaluate.main(args) == 0
    assert os.path.exists(os.path.join(out, "rollout.gif"))
    before = open(os.path.join(out, "metrics.json")).read()
    assert evaluate.main(args + ["--protocols", "next_frame"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert open(os.path.join(out, "metrics.json")).read() == before
    assert evaluate.main(args + ["--protocols", "next_frame", "--overwrite"]) == 0
    assert not os.path.exists(os.path.join(out, "rollout.gif"))  # the earlier set's rollout files are gone
    assert "rollout_10_10" not in json.load(open(os.path.join(out, "metrics.json")))
    assert not [f for f in os.listdir(out) if f.startswith(".staging")]
    assert evaluate.default_out("results/model.keras") == os.path.join("runs", "eval", "results")


def test_tensorboard_logs_for_both_trainers(tmp_path, mnist_dir):
    """--tensorboard DIR leaves TensorBoard event files of the fit (train and validation)."""
    tb = tmp_path / "tb"
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", str(tmp_path / "r"), "--tensorboard", str(tb)]) == 0
    events = [os.path.join(r, f) for r, _, fs in os.walk(tb) for f in fs if f.startswith("events.out.tfevents")]
    assert {os.path.basename(os.path.dirname(e)) for e in events} >= {"train", "validation"}


def test_config_flag_reproduces_a_saved_run(run_dir, mnist_dir, tmp_path, capsys):
    """`train.py --config RUN/config.json` trains the same config (the same seed:
    the same weights); flags given as well override it; a broken file is one error line."""
    import keras

    from config import Config

    saved = os.path.join(run_dir, "config.json")
    again = str(tmp_path / "again")
    assert train.main(["--config", saved, "--mnist", mnist_dir, "--out", again]) == 0
    assert Config.load(os.path.join(again, "config.json")) == Config.load(saved)
    a = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    b = keras.saving.load_model(os.path.join(again, "model.keras"), compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    other = str(tmp_path / "other")
    assert train.main(["--config", saved, "--mnist", mnist_dir, "--out", other, "--seed", "5"]) == 0
    cfg = Config.load(os.path.join(other, "config.json"))
    assert cfg.train.seed == 5 and cfg.model == Config.load(saved).model
    (tmp_path / "bad.json").write_text("{not json")
    assert train.main(["--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert train.main(["--config", saved, "--preset", "cpu", "--out", str(tmp_path / "y")]) == 2
    wide = Config.load(saved)
    wide.train.subpixel_jitter = 2.0  # a hand-edited config.json: refused before any work
    wide.save(tmp_path / "wide.json")
    capsys.readouterr()
    assert train.main(["--config", str(tmp_path / "wide.json"), "--out", str(tmp_path / "z")]) == 2
    assert "--subpixel-jitter must be a width in [0, 1], got 2.0" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "z")


def test_the_gpu_default_path_runs_end_to_end(tmp_path, mnist_dir):
    """`python train.py` as the design promises a GPU user (preset seed: full
    64x64 frames, fp32, the VGG16 perceptual term on), on tiny settings with a
    local VGG16 weights file (random weights: no download): a time-budget stop,
    the resume that finishes it, and evaluate.py on the result."""
    import keras

    vgg_path = str(tmp_path / "vgg16_notop.weights.h5")
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3)).save_weights(vgg_path)
    out = str(tmp_path / "seed")
    args = ["--mnist", mnist_dir, "--out", out, "--vgg-weights", vgg_path, "--steps-per-epoch", "1",
            "--val-sequences", "2", "--batch-size", "1", "--seq-len", "4", "--epochs", "2"]
    assert train.main([*args, "--time-budget-min", "0"]) == 0  # stops after epoch 1
    assert train.run_state(out) == "interrupted"
    assert train.main(args) == 0                              # resumes, finishes epoch 2
    assert train.run_state(out) == "finished"
    log = runio.read_log(os.path.join(out, "log.csv"))
    assert list(log["epoch"]) == [0, 1]
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["preset"] == "seed" and cfg["model"]["patch_size"] == 1 and cfg["train"]["perceptual_weight"] > 0
    assert evaluate.main(["--checkpoint", os.path.join(out, "model.keras"), "--mnist", mnist_dir,
                          "--sequences", "2", "--batch-size", "2", "--out", str(tmp_path / "eval")]) == 0
    assert json.load(open(str(tmp_path / "eval" / "metrics.json")))["data"]["sequences"] == 2


def test_a_replaced_run_waits_aside_until_the_new_one_finishes(tmp_path, mnist_dir):
    """--overwrite moves a finished run to OUT/.replaced/ (nothing deleted yet); a
    new run stopped by its time budget leaves it there, and the finished one removes it."""
    out = str(tmp_path / "r")
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", out]) == 0
    old = open(os.path.join(out, "model.keras"), "rb").read()
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", out, "--overwrite", "--epochs", "2",
                       "--time-budget-min", "0"]) == 0  # stops after its first epoch
    assert open(os.path.join(out, ".replaced", "model.keras"), "rb").read() == old
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", out, "--epochs", "2"]) == 0  # resumes, finishes
    assert not os.path.exists(os.path.join(out, ".replaced")) and train.run_state(out) == "finished"


def test_a_budget_reached_in_the_last_epoch_finishes_the_run(tmp_path, mnist_dir, capsys):
    """A time budget passed during the run's last epoch stops nothing: the run is
    finished (no backup kept, no "run again to resume")."""
    out = str(tmp_path / "r")
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", out, "--epochs", "1", "--time-budget-min", "0"]) == 0
    assert train.run_state(out) == "finished" and not os.path.exists(os.path.join(out, "backup"))
    assert "resume" not in capsys.readouterr().out


def test_a_fine_tune_records_where_it_started(run_dir, mnist_dir, tmp_path):
    """config.json's init names the checkpoint a fine-tune started from, so --config reproduces it."""
    from config import Config

    start = os.path.join(run_dir, "model.keras")
    out = str(tmp_path / "ft")
    assert train.main([*SMOKE, "--mnist", mnist_dir, "--out", out, "--init", start, "--subpixel-jitter", "true"]) == 0
    cfg = Config.load(os.path.join(out, "config.json"))
    assert cfg.train.init == start and cfg.train.subpixel_jitter == 1.0
    assert Config.load(os.path.join(run_dir, "config.json")).train.init is None


def test_save_network_writes_the_archive_and_leaves_no_temporary_file(tmp_path):
    import keras

    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "net.keras")
    assert runio.save_network(net, path) == path
    assert os.listdir(tmp_path) == ["net.keras"]
    back = keras.saving.load_model(path)
    assert all(np.array_equal(a, b) for a, b in zip(net.get_weights(), back.get_weights()))
