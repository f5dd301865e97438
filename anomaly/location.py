"""The per-location normal-motion baseline: what a fixed camera has seen where.

The classical fixed-camera detector (in the spirit of Adam et al., "Robust
real-time unusual event detection using multiple fixed-location monitors",
PAMI 2008): every cell of a grid over the frame keeps a histogram of the motion
it saw on normal clips, and a frame is as unusual as the least likely motion
in any of its cells. A cell's motion in one frame is one of

    bin 0                       empty: little foreground and little flow
    bin 1                       occupied but still (someone standing)
    bins 2 .. 1 + D * S         moving: D direction sectors x S speed bands

from the mean flow vector (fx, fy) and mean density of the cell's pixels.
Surprise = -log p(bin | cell), with add-one smoothing over the bins, so a
motion never seen in a cell scores log(n + bins), n the frames the cell was
counted in, and a usual one near 0. Scored like the model: the cells are those
of its local score (`cells.cell_grid`), and the frame score is the
mean or the largest cell surprise, then the same causal smoothing.
"""

from __future__ import annotations

import numpy as np

from anomaly.cells import cell_grid, reduce_cells
from cli import InputError


def cell_means(raw: np.ndarray, border: int = 0) -> np.ndarray:
    """Raw features (T, S, S, C: flow x, flow y, density, ...) -> per-cell means
    (T, n, n, C) over the grid of `reduce_error_map` (cells of S // 8 pixels
    inside `border`)."""
    return np.moveaxis(cell_grid(np.moveaxis(raw, -1, 0), border), 0, -1)


class LocationModel:
    """Per-cell histograms of normal motion.

    Args:
        directions: direction sectors of moving cells.
        speed_edges: speed band edges in feature pixels per frame; a cell moves
            when its mean flow is at least the first edge.
        occupied: mean density from which a still cell counts as occupied.
        border: pixels left out at each edge (as the detector's `border`).
    """

    def __init__(self, directions: int = 8, speed_edges=(0.1, 0.4, 1.0), occupied: float = 0.05,
                 border: int = 0, counts: np.ndarray | None = None):
        self.directions = int(directions)
        self.speed_edges = tuple(float(e) for e in speed_edges)
        self.occupied = float(occupied)
        self.border = int(border)
        self.counts = counts

    @property
    def bins(self) -> int:
        return 2 + self.directions * len(self.speed_edges)

    def motion_bins(self, raw: np.ndarray) -> np.ndarray:
        """Raw features (T, S, S, C) -> the motion bin of every cell, (T, n, n) int."""
        m = cell_means(np.asarray(raw, np.float32), self.border)
        fx, fy, dens = m[..., 0], m[..., 1], m[..., 2]
        speed = np.hypot(fx, fy)
        sector = np.floor((np.arctan2(fy, fx) + np.pi) / (2 * np.pi) * self.directions).astype(int)
        sector = np.clip(sector, 0, self.directions - 1)
        band = np.clip(np.searchsorted(self.speed_edges, speed, side="right") - 1, 0, None)
        moving = 2 + sector * len(self.speed_edges) + band
        still = np.where(dens >= self.occupied, 1, 0)
        return np.where(speed >= self.speed_edges[0], moving, still)

    def fit(self, clips) -> "LocationModel":
        """Counts the bins of every cell over normal clips' raw features [(T, S, S, C)]."""
        counts = None
        for raw in clips:
            b = self.motion_bins(raw)
            if counts is None:
                counts = np.zeros((*b.shape[1:], self.bins), np.int64)
            ii, jj = np.indices(b.shape[1:])
            np.add.at(counts, (ii[None], jj[None], b), 1)  # every frame at once
        if counts is None:
            raise InputError("no normal clips to fit the per-location model on")
        self.counts = counts
        return self

    def surprise(self, raw: np.ndarray) -> np.ndarray:
        """-log p(bin | cell) of every cell of every frame: (T, n, n)."""
        return self.bin_surprise(self.motion_bins(raw))

    def bin_surprise(self, b: np.ndarray) -> np.ndarray:
        """Motion bins (T, n, n) int -> -log p(bin | cell) under the counts, (T, n, n)."""
        if self.counts is None:
            raise ValueError("fit the per-location model first")
        counts = np.asarray(self.counts)
        if b.shape[1:] != counts.shape[:2]:
            raise InputError(f"features give a {b.shape[1:]} grid, the model was fitted on "
                             f"{counts.shape[:2]}")
        p = (counts + 1.0) / (counts.sum(-1, keepdims=True) + self.bins)
        ii, jj = np.indices(b.shape[1:])
        return -np.log(p[ii, jj, b])

    def frame_scores(self, raw: np.ndarray, how: str = "local") -> np.ndarray:
        """(T,) frame scores: the largest cell surprise ("local") or the mean ("mean")."""
        return reduce_cells(self.surprise(raw), how)
