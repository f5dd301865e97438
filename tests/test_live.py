"""anomaly.detect on live sources: an MJPEG stream served over HTTP on loopback
that ends, stalls or never ends; alerts as they happen; Ctrl-C and kill."""

import http.server
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from anomaly import detect
from conftest import ROOT


class MjpegServer:
    """Serves `frames` (uint8 RGB) as multipart/x-mixed-replace JPEGs at `url`, then
    closes the connection ("end"), keeps it open sending nothing ("stall"), or
    starts over forever ("loop")."""

    def __init__(self, frames, after: str = "end", fps: float = 50.0):
        import cv2

        jpgs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in frames]
        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not stop.is_set():
                        for jpg in jpgs:
                            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                             b"Content-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                            time.sleep(1 / fps)
                        if after != "loop":
                            break
                    if after == "stall":
                        stop.wait(60)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A tiny autoencoder detector (random weights) on 16x16 features, window 4."""
    from anomaly.detector import Detector
    from anomaly.features import FeatureConfig
    from anomaly.config import AEConfig
    from anomaly.model import build_autoencoder

    d = str(tmp_path_factory.mktemp("live") / "det")
    cfg = AEConfig(encoder=(2,), decoder=(2,), patch_size=4, window=4, frame_size=16)
    Detector.save(d, build_autoencoder(cfg), {"features": FeatureConfig(frame_size=16).to_dict(),
                                              "normalizer": {"mean": [0, 0, 0], "std": [1, 1, 1]},
                                              "window": 4, "threshold": 1.0, "score": "mean"})
    return d


@pytest.fixture(scope="module")
def frames():
    from anomaly.synthetic import crowd_clip

    return crowd_clip(0, frames=12, size=64)[0]


def rows(out):
    lines = open(os.path.join(out, "scores.csv")).read().splitlines()
    assert lines[0] == "frame,score,is_anomaly"
    return [line.split(",") for line in lines[1:]]


@pytest.mark.parametrize("after", ["end", "stall"])
def test_a_stream_that_ends_or_stalls_is_scored_to_its_last_frame(detector, frames, tmp_path, capsys, after):
    server = MjpegServer(frames, after)
    try:
        t0 = time.time()
        out = str(tmp_path / "o")
        assert detect.main(["--model", detector, "--source", server.url, "--out", out, "--timeout", "1",
                            "--threshold", "1e-9"]) == 0
        assert time.time() - t0 < 30  # a stall ends after --timeout, not never
    finally:
        server.close()
    got = rows(out)
    assert [int(r[0]) for r in got] == list(range(len(frames)))
    assert got[2] == ["2", "", ""] and got[3][2] == "1"  # window 4: scored from frame 3 on
    printed = capsys.readouterr().out
    assert printed.count("ALERT") == 1 and "ALERT frame 3 at" in printed  # one line per onset
    assert "stopped by end of source" in printed
    for f in ("scores.png", "annotated.mp4"):
        assert os.path.getsize(os.path.join(out, f)) > 0


def test_max_frames_and_duration_stop_an_endless_stream(detector, frames, tmp_path, capsys):
    server = MjpegServer(frames, "loop")
    try:
        assert detect.main(["--model", detector, "--source", server.url, "--out", str(tmp_path / "a"),
                            "--max-frames", "7"]) == 0
        assert len(rows(str(tmp_path / "a"))) == 7 and "stopped by --max-frames 7" in capsys.readouterr().out
        t0 = time.time()
        assert detect.main(["--model", detector, "--source", server.url, "--out", str(tmp_path / "b"),
                            "--duration", "1"]) == 0
        assert time.time() - t0 < 20 and "stopped by --duration 1" in capsys.readouterr().out
        assert len(rows(str(tmp_path / "b"))) > 0
    finally:
        server.close()


def test_bad_live_sources_and_flags(detector, tmp_path, capsys):
    assert detect.main(["--model", detector, "--source", "http://127.0.0.1:9/none.mjpg", "--out",
                        str(tmp_path / "o"), "--timeout", "1"]) == 2
    assert "cannot open it" in capsys.readouterr().err
    assert detect.main(["--model", detector, "--source", "x.mp4", "--max-frames", "0"]) == 2
    assert "--max-frames must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_missing_file_source_is_refused_before_the_detector_loads(tmp_path, capsys, monkeypatch):
    import anomaly.fusion

    def no_load(*args, **kwargs):
        raise AssertionError("the detector was loaded (seconds of compiling) before the source was checked")

    monkeypatch.setattr(anomaly.fusion, "load_detector", no_load)
    out = tmp_path / "o"
    assert detect.main(["--model", "any", "--source", str(tmp_path / "none.mp4"), "--out", str(out)]) == 2
    assert "none.mp4: no such video file" in capsys.readouterr().err
    assert not out.exists()


def _wait_for_rows(out, n, proc, limit=120):
    t0 = time.time()
    path = os.path.join(out, "scores.csv")
    while time.time() - t0 < limit:
        if os.path.exists(path) and len(open(path).read().splitlines()) > n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the detector did not score frames in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_ctrl_c_stops_cleanly_and_a_killed_run_keeps_its_scores(detector, frames, tmp_path, sig):
    server = MjpegServer(frames, "loop")
    out = str(tmp_path / "o")
    proc = subprocess.Popen([sys.executable, "-m", "anomaly.detect", "--model", detector, "--source", server.url,
                             "--out", out], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(out, 5, proc)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    got = rows(out)
    assert len(got) >= 5 and [int(r[0]) for r in got] == list(range(len(got)))
    assert all(r[1] == "" or np.isfinite(float(r[1])) for r in got)
    if sig == signal.SIGINT:
        assert proc.returncode == 0, stderr
        assert "stopped by Ctrl-C" in stdout and os.path.getsize(os.path.join(out, "annotated.mp4")) > 0


def test_ctrl_c_is_a_request_answered_after_the_frame_in_hand(detector, frames, tmp_path):
    """The first Ctrl-C raises nowhere (an interrupt inside the worker pool's locks
    could leave the stream waiting forever): the source's next frame still comes,
    the run stops after it with every row kept, and the old handler is back.
    A second Ctrl-C stops at once."""
    from anomaly.fusion import load_detector

    seen = {"interrupted": 0, "served": 0}

    def source(presses):
        for i in range(200):
            try:
                if i == 8:
                    for _ in range(presses):
                        os.kill(os.getpid(), signal.SIGINT)
                seen["served"] += 1
                yield frames[i % len(frames)]
            except KeyboardInterrupt:
                seen["interrupted"] += 1
                raise

    before = signal.getsignal(signal.SIGINT)
    det = load_detector([detector])
    run = detect.Stream(det, str(tmp_path))
    run.run(source(1))
    assert run.stopped_by == "Ctrl-C" and seen["interrupted"] == 0
    assert 1 <= len(run.scores) <= 9 and seen["served"] == 9
    assert signal.getsignal(signal.SIGINT) is before
    assert [int(r[0]) for r in rows(str(tmp_path))] == list(range(len(run.scores)))

    run = detect.Stream(det, str(tmp_path / "twice"))
    os.makedirs(str(tmp_path / "twice"))
    run.run(source(2))
    assert run.stopped_by == "Ctrl-C" and len(run.scores) <= 9
    assert signal.getsignal(signal.SIGINT) is before
