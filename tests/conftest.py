import gzip
import os
import struct
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_idx_images(path, images):
    images = np.asarray(images, np.uint8)
    header = struct.pack(">IIII", 2051, len(images), *images.shape[1:])
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes())


def toy_digits(n, seed=0):
    """n 28x28 'digits': a bright random rectangle each, distinct per index."""
    rng = np.random.default_rng(seed)
    d = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r0, c0 = rng.integers(2, 12, 2)
        h, w = rng.integers(6, 14, 2)
        d[i, r0:r0 + h, c0:c0 + w] = rng.integers(100, 256)
    return d


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A folder in the original IDX layout with 9,000 toy test-split digits."""
    folder = tmp_path_factory.mktemp("mnist")
    write_idx_images(str(folder / "t10k-images-idx3-ubyte.gz"), toy_digits(9000))
    return str(folder)


@pytest.fixture(scope="session")
def shared_mnist():
    """The project's offline MNIST copy, when present beside the checkout."""
    path = os.environ.get("MNIST_PATH") or os.path.join(ROOT, "..", "shared", "data", "mnist")
    if not os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("../shared/data/mnist not present")
    return path


@pytest.fixture
def tiny_detector(tmp_path):
    """A function (benchmark kwargs, extra anomaly.train flags, scene folder) ->
    (benchmark folder, detector folder): a tiny `anomaly.synthetic` benchmark in
    tmp_path/crowd (seed 0, 64x64) and a detector trained one epoch at 32x32 on
    the clips of its `scene` folder, in tmp_path/det."""

    def make(bench: dict, flags: list, scene: str = "train"):
        from anomaly import synthetic, train

        data, out = str(tmp_path / "crowd"), str(tmp_path / "det")
        synthetic.make_benchmark(data, seed=0, size=64, **bench)
        assert train.main(["--videos", os.path.join(data, scene, "*.mp4"), "--out", out, "--epochs", "1",
                           "--frame-size", "32", "--verbose", "0", *flags]) == 0
        return data, out

    return make
