"""Is one rasterisation convention intrinsically harder to forecast than another?

    python benchmarks/convention_bayes.py --mnist ../shared/data/mnist --out results/convention_bayes.json   # ~40 s

A model's 10->10 error differs between truncation (offset 0, the reference) and
rounding (offset 0.5); `benchmarks/conventions.py` measures that. This script
asks what an ideal forecaster would lose: per axis of one digit, the position is
floor(36 x_t + u) with x_t the reference's bouncing coordinate (`data.bounce`),
and the forecaster sees the 10 context positions and must place the digit in
frames 10-19. Its least possible squared position error is the posterior
variance of the future integer position given the context, averaged over the
prior (start uniform, direction uniform). It is estimated by drawing many
trajectories and grouping those with identical contexts (the variance of the
future positions within a group, with Bessel's correction; a group of one
contributes nothing, so groups must be large: `median_group` and `alone`, the
share of points alone in theirs, in the report).

Two bounds, since the two axes share one speed (|v| = 0.1) and a forecaster
sees both: `axis_alone` knows only this axis's context (an upper bound on the
ideal error), `speed_known` also knows this axis's exact speed |v_axis| (a lower
bound). Each for the convention known (`known`: trained on that offset alone)
and for an offset drawn uniformly per digit and axis (`jittered`: what a model
trained with `--subpixel-jitter true` faces; the same forecaster, scored on
each offset's trajectories). If the ideal errors at offsets 0 and 0.5 are equal,
a model whose errors differ has learned a convention; if they differ, so must
any model's.

With `--mnist`, each variance is also put in the units of the 10->10 MSE per
frame: a digit whose position is uncertain between neighbouring pixels costs
the forecaster (posterior variance) x (the digit's squared difference to itself
shifted by one pixel) in each axis (exact for two neighbouring positions, an
estimate for wider posteriors), summed over two axes and two digits, with the
MNIST training digits' mean shift energies; overlaps are ignored.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import common  # noqa: F401  (puts the repository root on sys.path)
from cli import seed_arg  # noqa: E402

FREE = 36  # free pixels of a 28-pixel digit in a 64-pixel frame


def axis_positions(x0, theta, offset, frames=20):
    """Integer positions (N, frames) of one axis (the row: velocity sin theta)."""
    import data

    start = np.stack([x0, np.zeros_like(x0)], axis=-1)
    x = data.bounce(start, theta, frames)[..., 0]
    return data.rasterise(x, FREE, np.asarray(offset)[..., None])


def posterior_variance(keys, future):
    """Per point: the (unbiased) variance of `future` (N, F) within its group of equal
    `keys` (N,) averaged over frames, whether that group holds more than one future
    value, and the group's size."""
    _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    var, spread = np.zeros(len(keys)), np.zeros(len(keys), bool)
    for f in range(future.shape[1]):
        y = future[:, f].astype(np.float64)
        s1 = np.bincount(inv, y)
        s2 = np.bincount(inv, y * y)
        mean = s1 / counts
        # Bessel's correction: a group of n points underestimates its variance by (n - 1) / n
        v = np.maximum(s2 / counts - mean ** 2, 0.0) * counts / np.maximum(counts - 1, 1)
        var += v[inv] / future.shape[1]
        spread |= v[inv] > 1e-12
    return var, spread, counts[inv]


def context_keys(pos, context=10, extra=None):
    """One int64 key per trajectory from its context positions (0..36 each) and an optional extra id."""
    key = np.zeros(len(pos), np.int64)
    for t in range(context):
        key = key * (FREE + 1) + pos[:, t]
    if extra is not None:
        key = key * 4096 + extra  # extra < 4096; 37**10 * 4096 < 2**63
    return key


def study(offsets, n, speed_bins, seed):
    rng = np.random.default_rng(seed)
    # one set of continuous trajectories, drawn at every offset (like with like)
    x0 = rng.uniform(size=n)
    theta = rng.uniform(0, 2 * np.pi, n)
    # speed_known: the exact |v| quantised to fine bins, so groups are large; the bin is part of the key
    vbin = np.minimum((np.abs(np.sin(theta)) * speed_bins).astype(np.int64), speed_bins - 1)
    pos = {o: axis_positions(x0, theta, o) for o in offsets}
    out = {}
    for bound, extra in (("axis_alone", None), ("speed_known", vbin)):
        res = {"known": {}, "jittered": {}}
        for o in offsets:
            var, spread, count = posterior_variance(context_keys(pos[o], extra=extra), pos[o][:, 10:])
            res["known"][str(o)] = {"px2": float(var.mean()), "undetermined": float(spread.mean()),
                                    "median_group": float(np.median(count)),
                                    "alone": float((count == 1).mean())}
        # jittered: the same trajectories, each shown at one offset drawn uniformly; one forecaster
        # for all (groups pooled over offsets), scored separately on each offset's points
        which = rng.integers(len(offsets), size=n)
        allpos = np.stack([pos[o] for o in offsets])[which, np.arange(n)]
        var, spread, count = posterior_variance(context_keys(allpos, extra=extra), allpos[:, 10:])
        for i, o in enumerate(offsets):
            m = which == i
            res["jittered"][str(o)] = {"px2": float(var[m].mean()), "undetermined": float(spread[m].mean()),
                                       "median_group": float(np.median(count[m])),
                                       "alone": float((count[m] == 1).mean())}
        out[bound] = res
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--offsets", default="0,0.25,0.5,0.75", help="sub-pixel offsets (default: %(default)s)")
    p.add_argument("--trajectories", type=int, default=4_000_000, help="per offset (default: %(default)s)")
    p.add_argument("--speed-bins", type=int, default=400, help="bins of |v| for speed_known (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--mnist", default=None, help="MNIST source: adds mse_frame_estimate (see above)")
    p.add_argument("--out", required=True, help="JSON to write")
    args = p.parse_args(argv)
    import runio

    offsets = [float(x) for x in args.offsets.split(",")]
    t0 = time.time()
    res = study(offsets, args.trajectories, args.speed_bins, args.seed)
    energy = None
    if args.mnist:
        import data

        d = data.to_float(data.load_mnist_digits(args.mnist, "train"))
        energy = float(sum((np.diff(d, axis=a) ** 2).sum((1, 2)).mean() for a in (1, 2)))  # row + col
        for r in res.values():
            for rows in r.values():
                for v in rows.values():
                    v["mse_frame_estimate"] = v["px2"] * energy * 2  # two digits
    for bound, r in res.items():
        for kind, rows in r.items():
            print(bound, kind, "  ".join(
                f"{o}: {v['px2']:.4f} px2 ({v['undetermined']:.1%} undetermined, median group "
                f"{v['median_group']:.0f}, {v['alone']:.1%} alone)"
                + (f" ~{v['mse_frame_estimate']:.1f} MSE/frame" if energy else "") for o, v in rows.items()))
    runio.write_json({"trajectories_per_offset": args.trajectories, "speed_bins": args.speed_bins,
                      "seed": args.seed, "shift_energy_row_plus_col": energy, "seconds": round(time.time() - t0, 1),
                      "note": "ideal forecaster's squared error of a digit's future integer position "
                              "(px^2, one axis, frames 10-19 from frames 0-9); see the docstring",
                      "bounds": res}, args.out)


if __name__ == "__main__":
    main()
