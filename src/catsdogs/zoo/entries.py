"""The model zoo as params: which models exist, how each is built, and how it is trained.

Reads the `seed`, `train`, `models` and `finetune` sections of params.yaml (a dict) and
returns checked, frozen specs; reads no file itself. A `models` entry names its architecture
(`arch`, a key of `models.architectures.ARCHITECTURES`) and that builder's settings; a `finetune` entry
continues a trained `models` entry (`init_from`) with its base unfrozen from `fine_tune_at`.
Either may set `optimizer` and `learning_rate`, and override `train` settings for itself
(`ENTRY_TRAIN_KEYS`): the entry wins over `train`. Every mistake is a ConfigError naming the
key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import keras

from catsdogs.core.params import (
    ConfigError,
    Range,
    check_settings,
    from_mapping,
    keyword_hints,
    read_section,
    read_seed,
    section,
)
from catsdogs.models.architectures import ARCHITECTURES, resolve_weights
from catsdogs.zoo.settings import (
    ENTRY_TRAIN_KEYS,
    FINETUNE_TRAIN_KEYS,
    NOT_DECIDING,
    TrainConfig,
    entry_names,
)

OPTIMIZERS: dict[str, Callable[[float], keras.optimizers.Optimizer]] = {
    "adam": lambda lr: keras.optimizers.Adam(learning_rate=lr),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(learning_rate=lr),
    "sgd": lambda lr: keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
}


@dataclass(frozen=True)
class OptimizerConfig:
    """A zoo entry's optimizer and learning rate."""

    # The names of OPTIMIZERS, so the checked path words a wrong one with its params key.
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # type: ignore[valid-type]
    learning_rate: Annotated[float, Range(0, low_open=True)] = 1e-3

    def build(self) -> keras.optimizers.Optimizer:
        """A fresh Keras optimizer."""
        return OPTIMIZERS[self.optimizer](self.learning_rate)


@dataclass(frozen=True)
class ModelSpec:
    """A `models` entry: its name, architecture and builder settings, optimizer and overrides."""

    name: str
    arch: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    optimizer: OptimizerConfig = OptimizerConfig()
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def build(self, input_shape: tuple[int, int, int]) -> keras.Model:
        """Build the (uncompiled) model for images of `input_shape`."""
        return ARCHITECTURES[self.arch](input_shape, **self.settings)

    def train_config(self, train: TrainConfig) -> TrainConfig:
        """`train` with this entry's own settings applied."""
        return dataclasses.replace(train, **self.overrides)


@dataclass(frozen=True)
class FinetuneSpec:
    """A `finetune` entry: continue `init_from`, unfrozen from layer `fine_tune_at` on."""

    name: str
    init_from: str
    fine_tune_at: int
    optimizer: OptimizerConfig = OptimizerConfig()
    overrides: Mapping[str, Any] = field(default_factory=dict)


def _entry(section_: Mapping[str, Any], name: str, kind: str) -> tuple[dict[str, Any], str]:
    if name not in section_:
        raise ConfigError(f"unknown {kind} '{name}'; choose from: {', '.join(section_)}")
    where = f"{'models' if kind == 'model' else 'finetune'}.{name}"
    entry = section_[name]
    if not isinstance(entry, Mapping):
        raise ConfigError(f"'{where}' must be a mapping of settings, got {entry!r}")
    return dict(entry), where


def _pop_common(entry: dict[str, Any], where: str, train_keys: tuple[str, ...]) -> tuple[
        OptimizerConfig, dict[str, Any]]:
    """Take the optimizer settings and the `train` overrides out of `entry`, checked."""
    optimizer = from_mapping(
        OptimizerConfig,
        {k: entry.pop(k) for k in ("optimizer", "learning_rate") if k in entry},
        where,
    )
    hints = typing.get_type_hints(TrainConfig, include_extras=True)
    overrides = check_settings(
        {k: entry.pop(k) for k in train_keys if k in entry}, {k: hints[k] for k in train_keys},
        where,
    )
    return optimizer, overrides


def model_spec(models: Mapping[str, Any], name: str) -> ModelSpec:
    """Check and return the entry `name` of the `models` params section."""
    entry, where = _entry(models, name, "model")
    optimizer, overrides = _pop_common(entry, where, ENTRY_TRAIN_KEYS)
    arch = entry.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"unknown architecture '{arch}' in '{where}.arch'; choose from: "
            f"{', '.join(ARCHITECTURES)}"
        )
    settings = check_settings(entry, keyword_hints(ARCHITECTURES[arch]), where)
    return ModelSpec(name=name, arch=arch, settings=settings, optimizer=optimizer,
                     overrides=overrides)


def finetune_spec(finetune: Mapping[str, Any], name: str) -> FinetuneSpec:
    """Check and return the entry `name` of the `finetune` params section."""
    entry, where = _entry(finetune, name, "fine-tuned model")
    optimizer, overrides = _pop_common(entry, where, FINETUNE_TRAIN_KEYS)
    checked = check_settings(
        entry, {"init_from": str, "fine_tune_at": Annotated[int, Range(0)]}, where
    )
    for key in ("init_from", "fine_tune_at"):
        if key not in checked:
            raise ConfigError(f"missing setting '{where}.{key}'")
    return FinetuneSpec(name=name, optimizer=optimizer, overrides=overrides, **checked)


@dataclass(frozen=True)
class TrainingJob:
    """One model to train, resolved from params: what to build and how to train it.

    `init_from` is the name of the model a fine-tuned one continues, else None; `entry` is
    the zoo entry as written in params.yaml (for the record); `config` the `train` section
    with the entry's overrides applied.
    """

    name: str
    config: TrainConfig
    optimizer: OptimizerConfig
    seed: int
    entry: Mapping[str, Any]
    model: ModelSpec | None = None
    finetune: FinetuneSpec | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.config.image_size, self.config.image_size, 3)

    def setting(self, key: str) -> str:
        """The params key a `train` setting of this job comes from, for messages."""
        spec = self.model or self.finetune
        section_name = "models" if self.model else "finetune"
        return f"{section_name}.{self.name}.{key}" if key in spec.overrides else f"train.{key}"


def training_job(params: Mapping[str, Any], name: str, *,
                 check_files: bool = True) -> TrainingJob:
    """The job of zoo entry `name` (of `models` or `finetune`), every setting checked, and
    (unless `check_files` is false: params only read, for a digest) its weights file found."""
    if name not in entry_names(params):
        raise ConfigError(f"unknown model '{name}'; choose from: {', '.join(entry_names(params))}")
    train = read_section(params, "train", TrainConfig)
    seed = read_seed(params)
    finetune = params.get("finetune") or {}
    if name in finetune:
        spec = finetune_spec(finetune, name)
        parent = model_spec(section(params, "models"), spec.init_from)
        # The parent's image size, the size its saved model takes; the rest from `train`.
        image_size = parent.train_config(train).image_size
        config = dataclasses.replace(train, image_size=image_size, **spec.overrides)
        return TrainingJob(name=name, config=config, optimizer=spec.optimizer, seed=seed,
                           entry=finetune[name], finetune=spec)
    spec = model_spec(section(params, "models"), name)
    pretrained = params.get("pretrained")
    if isinstance(pretrained, Mapping) and spec.arch not in pretrained:
        # Its train stage depends on data/pretrained/<arch>/, which the pretrained stage
        # writes only for the architectures that section names.
        raise ConfigError(f"models.{name}.arch '{spec.arch}' has no entry in 'pretrained'; add "
                          f"pretrained.{spec.arch}: none (random initial weights) or "
                          "{url: ..., sha256: ...}")
    if "weights" in spec.settings and check_files:
        # A missing file fails before any training. Not when params are only read (for a
        # digest, a report): the pretrained stage may not have run there.
        resolve_weights(spec.settings["weights"])
    return TrainingJob(name=name, config=spec.train_config(train), optimizer=spec.optimizer,
                       seed=seed, entry=params["models"][name], model=spec)


def params_digest(params: Mapping[str, Any], name: str) -> str:
    """A short digest of every setting that shapes model `name`'s numbers, from params alone
    (no file need exist): the seed, its `train` settings with its own applied (not those
    that change no number, `zoo.settings.NOT_DECIDING`), its entry, and the entry of the
    model it fine-tunes."""
    job = training_job(params, name, check_files=False)
    train = {k: v for k, v in dataclasses.asdict(job.config).items() if k not in NOT_DECIDING}
    record = {"seed": job.seed, "train": train, "entry": job.entry}
    if job.finetune:
        record["init_from"] = params["models"][job.finetune.init_from]
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
