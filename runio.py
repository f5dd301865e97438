"""Run-folder I/O: the JSON reports and CSV training logs every entry point
writes and reads, each written to a temporary file and renamed (a kill never
leaves one half-written)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from cli import InputError


def write_json(obj, path):
    """`obj` as indented JSON at `path`, written then renamed."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
    return path


def read_log(path) -> dict:
    """A Keras CSVLogger file as {column: float array}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"{path}: empty training log")
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
            for k in rows[0]}
