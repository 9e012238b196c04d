"""Where and how reproducibly a training runs: seeds, the tf.distribute strategy, the chief.

`set_determinism` seeds every generator and makes TensorFlow's ops deterministic;
`choose_strategy` turns `train.strategy` (auto, default, mirrored, multi_worker) into a
tf.distribute strategy, reading TF_CONFIG's cluster and the visible devices; `is_chief` says
which process of a cluster writes outputs. Writes nothing.
"""

from __future__ import annotations

import json
import os
import typing

import keras
import tensorflow as tf

from catsdogs.core.params import ConfigError
from catsdogs.zoo.settings import Strategy


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic.

    Two runs with the same params on the same CPU then give identical weights and metrics.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def choose_strategy(name: Strategy) -> tf.distribute.Strategy:
    """Pick a tf.distribute strategy: auto, default, mirrored or multi_worker.

    auto: multi-worker when TF_CONFIG describes a cluster of several tasks, mirrored over all
    local GPUs when there is more than one, the default (single device) strategy otherwise.
    mirrored without GPUs mirrors over the logical CPU devices. Create it before any other
    TensorFlow work: multi-worker collectives must be set up first in the process.
    """
    if name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(
        f"unknown strategy '{name}'; choose from: {', '.join(typing.get_args(Strategy))}"
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes outputs and logs: always, except on non-chief workers.

    In a multi-worker cluster the chief is the `chief` task, or worker 0 when there is none.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0
