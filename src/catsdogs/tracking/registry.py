"""The registry: the model `catsdogs`, its versions, and which of them holds the champion alias.

compare registers its candidate (the best model's photo-serving LoggedModel) as a version,
or finds the version that already holds it, and gives it the champion alias when it beats the
current champion on the same validation photos (`evaluation.champion` decides), else the
challenger alias; the reason is tagged on the version. Reads the store's versions and their
tags, and git (which tracked files differ from HEAD); writes versions, their tags and the
aliases.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from catsdogs.evaluation.champion import CHALLENGER, CHAMPION, Standing, champion_decision
from catsdogs.tracking.logged_models import KERAS_MODEL_TAG, known_model
from catsdogs.tracking.photo_model import TAKES_PHOTOS, TAKES_TAG
from catsdogs.tracking.store import REGISTERED_MODEL, project_root, store_lock
from catsdogs.tracking.writes import write

log = logging.getLogger(__name__)

# On a registered version: which validation photos its val_accuracy was measured on
# (data.manifest.split_digest), and why it holds its alias.
VALIDATION_DATA_TAG = "validation_data"
ALIAS_REASON_TAG = "catsdogs.alias_reason"
# On a version made from code or params that differ from its git_commit: which files.
UNCOMMITTED_TAG = "catsdogs.uncommitted"


@dataclass(frozen=True)
class Registration:
    """What `register_candidate` did: the model's registry version, the alias it now holds
    (champion or challenger) and why."""

    version: str
    alias: str
    reason: str


def _standing(version: Any) -> Standing:
    tags = version.tags or {}
    score = tags.get("val_accuracy")
    return Standing(str(version.version), float(score) if score else None,
                    tags.get(VALIDATION_DATA_TAG))


def uncommitted_paths(root: Path | None = None) -> list[str]:
    """Tracked files that differ from HEAD, but for those a pipeline run writes itself
    (dvc.lock, metrics/): the uncommitted code or params a result may come from. Empty
    outside git."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root or project_root(), capture_output=True, text=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    paths = [line[3:].split(" -> ")[-1] for line in status.splitlines() if line.strip()]
    return [p for p in paths if p != "dvc.lock" and not p.startswith("metrics/")]


def _champion(client: MlflowClient) -> Any:
    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException:
        return None


def _holds(version: Any, keras_model_id: str) -> bool:
    """Whether registered `version` is the Keras model `keras_model_id`, or wraps it."""
    return keras_model_id in (version.model_id, version.source.removeprefix("models:/"),
                              (version.tags or {}).get(KERAS_MODEL_TAG))


def _takes_photos_instead(candidate: Standing, incumbent: Any, wraps: str, alias: str,
                          reason: str) -> tuple[str, str]:
    """A photo-serving candidate (wrapping the Keras model `wraps`) takes the alias from a
    champion that takes arrays (a version from before models took photos) when it is that
    champion's own model, or at least as good on the same validation photos: the champion
    becomes photo-serving without retraining. Else (alias, reason) as decided."""
    if (incumbent.tags or {}).get(TAKES_TAG) == TAKES_PHOTOS:
        return alias, reason
    if _holds(incumbent, wraps):
        return CHAMPION, (f"the champion's own model (version {incumbent.version}), now "
                                "taking photos")
    theirs = _standing(incumbent)
    if (candidate.validation_data is not None and candidate.validation_data == theirs.validation_data
            and (candidate.val_accuracy or 0.0) >= (theirs.val_accuracy or 0.0)):
        return CHAMPION, (
            f"it takes photos and is as good as the champion, version {incumbent.version}, which "
            f"takes arrays, on the same validation photos: {candidate.val_accuracy:.4f} >= "
            f"{theirs.val_accuracy or 0.0:.4f}")
    return alias, reason


def register_candidate(model_id: str | None, tags: Mapping[str, str], *,
                       promote: bool = False, uncommitted: Sequence[str] = (),
                       wraps: str | None = None) -> Registration | None:
    """Register the LoggedModel `model_id` as a version of `catsdogs` and give it the
    champion alias if it beats the current champion (`evaluation.champion.champion_decision`: better
    validation accuracy on the same validation photos, from the `val_accuracy` and
    VALIDATION_DATA_TAG tags), else the challenger alias. The reason is tagged on the version.
    A model made from `uncommitted` code or params (`uncommitted_paths`) is tagged so and
    waits as the challenger, unless `promote`d.

    Two compares at once: on a local SQLite store the read of the champion and the move of
    the alias happen under one lock, so the better model ends champion whatever the order.
    A tracking server has no compare-and-set: after the move the champion is read again,
    and where a concurrent compare moved it to a model this one beats, it is handed back.

    A model already registered keeps its version: no new version for an unchanged model. A
    candidate that `wraps` the champion's own Keras model (the photo-serving pyfunc of the
    model that holds the alias) takes the alias: the same numbers, now taking photos.
    Returns None (with a warning) when the model is not in this store, e.g. models pulled
    from a DVC remote that were trained against another tracking server.
    """
    if not known_model(model_id):
        log.warning("LoggedModel %s is not in %s; not registering it", model_id,
                    mlflow.get_tracking_uri())
        return None
    client = MlflowClient()
    tags = {**tags, "git_dirty": str(bool(uncommitted)).lower()}
    if uncommitted:
        tags[UNCOMMITTED_TAG] = ", ".join(uncommitted)[:5000]
    source = f"models:/{model_id}"  # a tracking server's answers carry the source, not model_id
    existing = [v for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'")
                if model_id in (v.model_id, v.source.removeprefix("models:/"))]
    if existing:
        registered = existing[0]
    else:
        registered = write(lambda: mlflow.register_model(source, REGISTERED_MODEL, tags=dict(tags)))
        log.info("registered %s version %s", REGISTERED_MODEL, registered.version)
    version = str(registered.version)
    candidate = Standing(version, float(tags["val_accuracy"]) if "val_accuracy" in tags else None,
                         tags.get(VALIDATION_DATA_TAG))
    with store_lock(mlflow.get_tracking_uri()):
        incumbent = _champion(client)
        alias, reason = champion_decision(
            candidate, _standing(incumbent) if incumbent else None, promote=promote)
        if alias != CHAMPION and wraps and incumbent is not None:
            alias, reason = _takes_photos_instead(candidate, incumbent, wraps, alias, reason)
        if uncommitted and not promote and alias == CHAMPION:
            alias, reason = CHALLENGER, (
                f"made from uncommitted changes ({', '.join(uncommitted[:3])}"
                f"{', ...' if len(uncommitted) > 3 else ''}): commit them and run again, or "
                "promote it on purpose with `python stages/compare.py --promote`")
        _move_alias(client, version, alias, reason)
    if alias == CHAMPION and not promote:
        _hand_back(client, candidate)
    log.info("%s version %s is %s: %s", REGISTERED_MODEL, version, alias, reason)
    return Registration(version, alias, reason)


def _move_alias(client: MlflowClient, version: str, alias: str, reason: str) -> None:
    write(lambda: client.set_registered_model_alias(REGISTERED_MODEL, alias, version))
    write(lambda: client.set_model_version_tag(REGISTERED_MODEL, version, ALIAS_REASON_TAG,
                                               f"{alias}: {reason}"))


def _hand_back(client: MlflowClient, ours: Standing) -> None:
    """After this process made `ours` champion: where another one since moved the alias to a
    version `ours` beats (it decided on what it read before our move), take it back."""
    holder = _champion(client)
    if holder is None or str(holder.version) == ours.version:
        return
    alias, reason = champion_decision(ours, _standing(holder))
    if alias == CHAMPION:
        log.warning("a concurrent compare gave the champion alias to version %s, which version "
                    "%s beats: handing it back", holder.version, ours.version)
        _move_alias(client, ours.version, alias, reason)
        _move_alias(client, str(holder.version), CHALLENGER,
                    f"a concurrent compare made it champion, but version {ours.version} beats it")
