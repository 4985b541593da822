"""Deployment build: a verified int8 / float32 C++ library from a trained Keras model.

The entry point is :func:`edgeloop.deploy.build.build_library`; the command line
is ``edgeloop deploy build`` (:mod:`edgeloop.deploy.cli`). Nothing here imports
TensorFlow at module import time.
"""

from __future__ import annotations
