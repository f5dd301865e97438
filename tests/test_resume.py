"""A training process killed with SIGKILL resumes from its last finished epoch."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import ROOT


def _cmd(out, mnist_dir):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--preset", "smoke", "--mnist", mnist_dir,
            "--out", out, "--epochs", "4", "--steps-per-epoch", "6", "--val-sequences", "2", "--seed", "3",
            "--verbose", "0"]


def _rows(out):
    path = os.path.join(out, "log.csv")
    if not os.path.exists(path):
        return []
    return [l for l in open(path).read().splitlines()[1:] if l.strip()]


def test_sigkill_then_resume(tmp_path, mnist_dir):
    out = str(tmp_path / "run")
    proc = subprocess.Popen(_cmd(out, mnist_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while len(_rows(out)) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(_rows(out))
    assert 1 <= done_before < 4
    assert os.path.isdir(os.path.join(out, "backup"))
    r = subprocess.run(_cmd(out, mnist_dir), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout
    epochs = [int(l.split(",")[0]) for l in _rows(out)]
    assert epochs == list(range(4))  # each epoch once, continued, not restarted
    assert not os.path.exists(os.path.join(out, "backup"))
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    import keras

    import model  # noqa: F401

    net = keras.saving.load_model(os.path.join(out, "model.keras"))
    assert np.isfinite(np.asarray(net(np.zeros((1, 2, 64, 64, 1), "float32")))).all()


def test_a_truncated_backup_resumes_from_the_epoch_before(tmp_path, mnist_dir):
    """A kill while the weights file is being written leaves it truncated: the
    run resumes from the double checkpoint (the epoch before), data stream too."""
    import train

    out = str(tmp_path / "run")
    args = ["--preset", "smoke", "--mnist", mnist_dir, "--out", out, "--epochs", "3",
            "--steps-per-epoch", "2", "--val-sequences", "2", "--verbose", "0"]
    assert train.main([*args, "--time-budget-min", "0"]) == 0
    assert train.main([*args, "--time-budget-min", "0"]) == 0  # epoch 2: epoch 1's copy is the .bkp
    weights = os.path.join(out, "backup", "latest.weights.h5")
    assert os.path.exists(weights + ".bkp") and train.completed_epochs(out) == 2
    with open(weights, "r+b") as f:
        f.truncate(96)
    assert train.completed_epochs(out) == 1
    assert train.main(args) == 0
    assert [int(l.split(",")[0]) for l in _rows(out)] == [0, 1, 1, 2]  # epoch 2 run again
