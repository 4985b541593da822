"""Small reference models for the deployment tests and benchmark.

A CNN on scikit-learn's 8x8 digits and a dense net on the wine table, trained
the same way wherever they are used (tests/integration/test_deploy_build.py,
bench/deploy.py). TensorFlow / Keras and scikit-learn are imported inside the
functions. Training is deterministic for a given sequence of calls after
:func:`seeded_keras`: callers that train several models keep their order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.deploy import convert

DIGITS_LABELS = [str(i) for i in range(10)]
WINE_LABELS = ["class_0", "class_1", "class_2"]


@dataclass(frozen=True)
class Dataset:
    """A train / held-out split, also saved as ``path`` (.npz: x, y, x_test, y_test)."""

    path: Path
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def keras_module() -> Any:
    """Keras, imported with TensorFlow's logging quieted."""
    convert.quiet_tensorflow()
    import keras

    return keras


def seeded_keras(seed: int = 0) -> Any:
    """Keras with its (Python, NumPy, backend) random seeds set to ``seed``."""
    keras = keras_module()
    keras.utils.set_random_seed(seed)
    return keras


def _save(path: Path, x: np.ndarray, y: np.ndarray, n_train: int) -> Dataset:
    data = Dataset(path, x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    np.savez(path, x=data.x, y=data.y, x_test=data.x_test, y_test=data.y_test)
    return data


def digits_dataset(root: Path) -> Dataset:
    """scikit-learn's 8x8 digits scaled to [0, 1], shape (n, 8, 8, 1): 1400 to train."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    return _save(root / "digits.npz", x, y, 1400)


def wine_dataset(root: Path) -> Dataset:
    """The wine table standardised, rows shuffled (seed 0): 140 to train."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    wine = load_wine()
    xw = StandardScaler().fit_transform(wine.data).astype("float32")
    yw = wine.target.astype("int64")
    order = np.random.default_rng(0).permutation(len(xw))
    return _save(root / "wine.npz", xw[order], yw[order], 140)


def train_digits_cnn(data: Dataset, path: Path) -> Path:
    """Conv, depthwise conv, max and average pooling, dense softmax; saved to ``path``."""
    keras = keras_module()
    cnn = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, padding="valid", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    cnn.compile("adam", "sparse_categorical_crossentropy")
    cnn.fit(data.x, data.y, epochs=25, batch_size=32, verbose=0)
    cnn.save(path)
    return path


def train_wine_dense(data: Dataset, path: Path) -> Path:
    """Three dense layers (32, 16, 3 softmax); saved to ``path``."""
    keras = keras_module()
    dense = keras.Sequential(
        [
            keras.Input((13,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    dense.compile("adam", "sparse_categorical_crossentropy")
    dense.fit(data.x, data.y, epochs=60, verbose=0)
    dense.save(path)
    return path
