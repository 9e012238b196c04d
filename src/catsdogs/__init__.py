"""catsdogs: a reproducible cats-vs-dogs image classification pipeline.

DVC stages (download, split, train, evaluate) over a model zoo in params.yaml, Keras models,
MLflow tracking. The library modules here are pure; `stages/` and `catsdogs.cli` are the edge.
"""

import os

# TensorFlow reads this once, when first imported; on a CPU-only machine its C++ side
# otherwise logs CUDA errors and version-skew notices that are not errors of ours. Set
# before any import of TensorFlow; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
