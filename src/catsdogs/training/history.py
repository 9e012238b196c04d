"""A training's per-epoch history: the numbers each epoch gives, and the history's columns.

Names only, no TensorFlow: training writes these columns (metrics/history/<model>.csv) and
hands the metrics to its per-epoch hooks, tracking logs them at step=epoch, and the
leaderboard's curves read them back. Also the name of the record of how a model was
trained, which the train stage leaves in the model's folder and `compare` reads. Reads and
writes nothing.
"""

from __future__ import annotations

# Keras' names for them (`objective.logit_accuracy()` is named "accuracy"): the training
# pass's loss and accuracy, then the same on the validation split.
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# A list, not a tuple: pandas reads a tuple as one column's key.
HISTORY_COLUMNS = ["epoch", *EPOCH_METRICS, "seconds"]
# Beside a trained model in models/<name>/: its settings, size and timings
# (`train.training_record`), kept out of the metrics DVC diffs.
TRAINING_FILE = "training.json"
