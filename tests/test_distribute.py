"""tf.distribute: two logical CPU devices (MirroredStrategy) and two local workers
on loopback ports (MultiWorkerMirroredStrategy) each train a few steps and leave
a model that loads -- for the predictor and for the anomaly detector."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import runio
from conftest import ROOT

WORKER = os.path.join(ROOT, "tests", "dist_worker.py")


def _args(out, mnist_dir, strategy):
    return ["train", "--preset", "smoke", "--mnist", mnist_dir, "--out", out, "--steps-per-epoch", "2",
            "--val-sequences", "4", "--strategy", strategy, "--verbose", "0"]


def _loads(path):
    import keras

    import model  # noqa: F401

    net = keras.saving.load_model(path)
    return np.isfinite(np.asarray(net(np.zeros((1, 2, 64, 64, 1), "float32")))).all()


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _on_two_logical_cpus(args):
    """Runs dist_worker.py ARGS in one process with the CPU split in two devices; its stdout."""
    env = {**os.environ, "LOGICAL_CPUS": "2"}
    r = subprocess.run([sys.executable, WORKER, *args], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _two_workers(args):
    """Runs dist_worker.py ARGS as workers 0 and 1 of a loopback cluster; their stdouts."""
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen([sys.executable, WORKER, *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (so, se) in zip(procs, results):
        assert p.returncode == 0, se[-3000:]
    return [so for so, _ in results]


def test_mirrored_on_two_logical_cpus(tmp_path, mnist_dir):
    out = str(tmp_path / "mirrored")
    assert "2 replicas, global batch 4" in _on_two_logical_cpus(_args(out, mnist_dir, "mirrored"))
    assert _loads(os.path.join(out, "model.keras"))


def test_two_workers_on_loopback(tmp_path, mnist_dir):
    out = str(tmp_path / "multi")
    stdouts = _two_workers(_args(out, mnist_dir, "multiworker"))
    assert "MultiWorkerMirroredStrategy: 2 replicas, global batch 4" in stdouts[0]
    assert _loads(os.path.join(out, "model.keras"))
    # the second worker wrote its copy aside, and both logged the same (all-reduced) numbers
    assert os.path.exists(os.path.join(out, ".worker1", "model.keras"))

    logs = [runio.read_log(os.path.join(d, "log.csv")) for d in (out, os.path.join(out, ".worker1"))]
    for k in ("loss", "val_loss", "val_psnr", "val_ssim"):
        assert len(logs[0][k]) == 1 and logs[0][k] == logs[1][k], k


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    from anomaly import synthetic

    folder = str(tmp_path_factory.mktemp("crowd"))
    synthetic.make_benchmark(folder, seed=0, frames=24, size=64, n_train=3, n_test_normal=0, n_panic=0,
                             n_runner=0, n_val_each=0)
    return folder


def _anomaly_args(crowd, out, strategy):
    return ["anomaly.train", "--videos", os.path.join(crowd, "train", "*.mp4"), "--out", out,
            "--epochs", "1", "--batch-size", "2", "--frame-size", "32", "--seq-len", "4",
            "--window-stride", "4", "--strategy", strategy, "--verbose", "0"]


def _detector_scores(folder, crowd):
    """The fused default detector saved in `folder` and its scores on a training clip."""
    from anomaly.fusion import load_detector
    from anomaly.video import read_video

    det = load_detector([folder])
    scores = det.score_frames(read_video(os.path.join(crowd, "train", "normal_00.mp4")))
    return det, scores


def _assert_both_parts_on_two_replicas(det):
    """Both parts of the fused default trained on two replicas (the motion model's batch is
    4 x --batch-size frames per replica: one frame each, not a 4-frame window)."""
    assert [p.configs[0].replicas for p in det.parts.values()] == [2, 2]
    assert {n: p.configs[0].global_batch for n, p in det.parts.items()} == {"reconstruct": 4, "motion": 16}


def test_anomaly_mirrored_on_two_logical_cpus(tmp_path, crowd):
    out = str(tmp_path / "ae")
    stdout = _on_two_logical_cpus(_anomaly_args(crowd, out, "mirrored"))
    assert "MirroredStrategy: 2 replicas, global batch 4" in stdout
    det, scores = _detector_scores(out, crowd)
    _assert_both_parts_on_two_replicas(det)
    assert np.isfinite(scores[~np.isnan(scores)]).all()


def test_anomaly_two_workers_on_loopback(tmp_path, crowd):
    out = str(tmp_path / "ae_multi")
    stdouts = _two_workers(_anomaly_args(crowd, out, "multiworker"))
    assert "MultiWorkerMirroredStrategy: 2 replicas, global batch 4" in stdouts[0]
    det, scores = _detector_scores(out, crowd)
    det1, _ = _detector_scores(os.path.join(out, ".worker1"), crowd)
    assert np.isfinite(scores[~np.isnan(scores)]).all()
    _assert_both_parts_on_two_replicas(det)
    # synchronous training: both workers end with the same trainable weights (BatchNorm's
    # moving statistics are per worker, as in any Keras data-parallel run)
    for name, part in det.parts.items():
        for a, b in zip(part.models[0].trainable_weights, det1.parts[name].models[0].trainable_weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
