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
