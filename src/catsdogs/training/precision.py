"""Numeric precision: float32, or Keras mixed precision where the hardware does it natively.

`with_precision` rebuilds a model with every layer under another dtype policy (the weights
stay float32 variables and are copied over), except the float32 `logit` layer, so the loss
stays stable. Training converts to the requested policy and back to float32 before saving:
a saved model loads and predicts in float32 whatever precision trained it. `hardware_note`
says whether a choice suits the machine: bfloat16 needs AVX512_BF16 or AMX on a CPU, or a
GPU of compute capability 8.0 or later; float16 a GPU of 7.0 or later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from catsdogs.models.architectures import FLOAT32_LAYERS
from catsdogs.zoo.settings import Precision

# mixed_bfloat16 over float32: images per second of M1's training step on batches in memory,
# on a 2-core AMD EPYC with AVX512_BF16 (the probe in issue 14). Accuracy at that setting is
# for benchmarks/train_speed.py --precision to measure on the machine at hand.
MEASURED_BF16_SPEEDUP = 1.8
# CPU flags (from /proc/cpuinfo) that mean native bfloat16 arithmetic.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def with_precision(model: keras.Model, precision: Precision) -> keras.Model:
    """The same model with every layer's dtype policy set to `precision`, weights copied.

    The preprocessing layers and the logit (`models.architectures.FLOAT32_LAYERS`) stay float32. Returns
    `model` itself when nothing would change.
    """
    def convert(node: Any, layer: str | None = None) -> Any:
        if isinstance(node, Mapping):
            if node.get("class_name") == "DTypePolicy" and layer not in FLOAT32_LAYERS:
                return {**node, "config": {**node["config"], "name": precision}}
            name = node["name"] if isinstance(node.get("name"), str) else layer
            return {key: convert(value, name) for key, value in node.items()}
        if isinstance(node, list):
            return [convert(value, layer) for value in node]
        return node

    config = model.get_config()
    converted = convert(config)
    if converted == config:
        return model
    clone = model.__class__.from_config(converted)
    clone.set_weights(model.get_weights())
    for original, copy in zip(all_layers(model), all_layers(clone), strict=True):
        copy.trainable = original.trainable  # trainable flags are not all in the config
    return clone


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(all_layers(layer))
    return layers


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """This CPU's feature flags; empty where /proc/cpuinfo does not exist (macOS, Windows)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the visible GPUs, e.g. [(8, 0)]; empty without GPUs."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if "compute_capability" in details:
            capabilities.append(tuple(details["compute_capability"]))
    return capabilities


def native(precision: Precision, *, flags: frozenset[str], gpus: Sequence[tuple[int, int]]) -> bool:
    """Whether the hardware computes in `precision` natively (float32 always does)."""
    if precision == "mixed_bfloat16":
        return any(capability >= (8, 0) for capability in gpus) or bool(flags & BF16_CPU_FLAGS)
    if precision == "mixed_float16":
        return any(capability >= (7, 0) for capability in gpus)
    return True


def hardware_note(
    precision: Precision, setting: str, *, flags: frozenset[str], gpus: Sequence[tuple[int, int]]
) -> tuple[str, str] | None:
    """("warning", text) when `precision` will be slow here, ("hint", text) when float32 leaves
    native bfloat16 unused, else None. `setting` names the params key to change."""
    if precision != "float32" and not native(precision, flags=flags, gpus=gpus):
        device = "GPU" if gpus else "CPU"
        return ("warning", f"{setting}: {precision} is not native on this {device}, so it "
                f"trains slower than float32, not faster; set {setting}: float32")
    if precision == "float32" and native("mixed_bfloat16", flags=flags, gpus=gpus):
        return ("hint", f"this machine computes bfloat16 natively: {setting}: mixed_bfloat16 "
                f"ran M1's training step {MEASURED_BF16_SPEEDUP}x faster on a "
                "2-core CPU with AVX512_BF16; benchmarks/train_speed.py --precision measures it here")
    return None
