"""The real-footage protocol (anomaly.footage) on a small stand-in recording."""

import json
import os

import numpy as np
import pytest

from anomaly import footage


def counting_frames(n, h=24, w=32):
    """Frame i carries its index in its pixels, so a clip says which source frames it holds."""
    f = np.zeros((n, h, w, 3), np.uint8)
    f[:] = (np.arange(n) % 256)[:, None, None, None]
    return f


def test_speedup_and_stop_by_hand():
    frames = counting_frames(300)
    clip, labels, idx = footage.speedup(frames, 10, lead=3, skip=3, length=4)
    assert idx.tolist() == [10, 11, 12, 13, 16, 19, 22]  # three at their rate, then every third
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(clip[:, 0, 0, 0], idx)
    clip, labels, idx = footage.stop(frames, 20, np.random.default_rng(0), lead=2, length=3, noise=2.0)
    assert idx.tolist() == [20, 21, 22, 22, 22] and labels.tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(clip[:2], frames[[20, 21]])  # normal frames untouched
    held = clip[2:].astype(int) - 22
    assert 1.0 < held.std() < 3.0 and abs(held.mean()) < 0.5  # the held frame, with sensor-like noise
    assert not np.array_equal(clip[2], clip[3])


def test_splits_never_share_a_source_frame():
    used = {}
    for split, (lo, hi) in footage.SPLITS.items():
        for c in footage.plan(split):
            n = c.get("frames") or (footage.LEAD + footage.SKIP * footage.ANOMALY_FRAMES
                                    if c["kind"] == "speedup" else footage.LEAD + 1)
            assert lo <= c["start"] and c["start"] + n <= hi, (split, c)
        used[split] = (lo, hi)
    assert used["train"][1] <= used["val"][0] and used["val"][1] <= used["test"][0]
    test = footage.plan("test")
    assert sum(c.get("mirrored", False) for c in test) == 2 and {c["kind"] for c in test} == {
        "normal", "speedup", "stop"}


def test_make_protocol_writes_labelled_clips(tmp_path):
    from anomaly.video import read_labels, read_video, write_video

    src = write_video(str(tmp_path / "rec.mp4"), counting_frames(795, 48, 64), 10.0)
    m = footage.make_protocol(src, str(tmp_path / "real"))
    assert json.load(open(tmp_path / "real" / "manifest.json")) == m
    assert sorted(os.listdir(tmp_path / "real" / "train")) == [
        f"normal_0{i}.{e}" for i in range(4) for e in ("labels.txt", "mp4")]
    c = m["clips"]["test/speedup_00"]
    assert c["onset"] == footage.LEAD and c["frames"] == footage.LEAD + footage.ANOMALY_FRAMES
    labels = read_labels(str(tmp_path / "real" / "test" / "speedup_00.labels.txt"))
    assert len(labels) == c["frames"] and labels.sum() == footage.ANOMALY_FRAMES
    assert len(read_video(str(tmp_path / "real" / "test" / "speedup_00.mp4"))) == c["frames"]
    assert m["clips"]["test/normal_02"]["mirrored"] and m["size"] == [32, 24]


def test_other_orders_cut_the_same_parts_from_the_other_end():
    from cli import InputError

    late = footage.source_order(795, "late-first")
    assert sorted(late) == list(range(795))  # every frame once
    # train: the last 400 frames; val: the 200 before; test: the first 195; each forward
    assert late[:2].tolist() == [395, 396] and late[399] == 794
    assert late[400:402].tolist() == [195, 196] and late[599] == 394
    assert late[600:602].tolist() == [0, 1] and late[-1] == 194
    assert footage.source_order(5, "backward").tolist() == [4, 3, 2, 1, 0]
    assert footage.source_order(5, "forward").tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(InputError, match="'sideways'"):
        footage.source_order(5, "sideways")


def test_make_protocol_in_another_order_records_the_recordings_frames(tmp_path):
    from anomaly.video import read_video, write_video

    src = write_video(str(tmp_path / "rec.mp4"), counting_frames(795, 48, 64), 10.0)
    m = footage.make_protocol(src, str(tmp_path / "late"), order="late-first")
    assert m["order"] == "late-first"
    assert m["clips"]["train/normal_00"]["source_frames"] == [395, 494]
    assert m["clips"]["test/normal_00"]["source_frames"] == [0, 99]
    clip = read_video(str(tmp_path / "late" / "test" / "normal_01.mp4"))  # frames 95-194, forward
    assert abs(clip[5].mean() - 100) < 10 and abs(clip[50].mean() - clip[5].mean() - 45) < 5  # (MP4 shifts grey)
    m = footage.make_protocol(src, str(tmp_path / "back"), order="backward")
    assert m["clips"]["train/normal_00"]["source_frames"] == [695, 794]
    c = m["clips"]["test/stop_00"]
    assert c["source_frames"] == [164, 194] and c["onset"] == footage.LEAD  # 194 down to 165, then 164 held


def test_fetch_without_apt_names_the_flag(tmp_path, monkeypatch):
    from cli import UserError

    monkeypatch.setattr(footage.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="--video"):
        footage.fetch_vtest(str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "vtest.avi").write_bytes(b"x")  # cached: no fetch at all
    assert footage.fetch_vtest(str(tmp_path / "cache")) == str(tmp_path / "cache" / "vtest.avi")
