"""The champion alias under concurrency, and for models made from uncommitted changes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from conftest import commit, sh
from mlflow.tracking import MlflowClient

from catsdogs.evaluation.champion import CHAMPION
from catsdogs.tracking import registry
from catsdogs.tracking.store import REGISTERED_MODEL, connect

# Registers one external model with the given validation accuracy once the file `go`
# exists, so that two processes decide at the same moment; each decision takes half a
# second (a slow store), so both read the champion before either moves it unless the
# decision is serialised.
CONTENDER = """
import sys, time
from pathlib import Path
import mlflow
from catsdogs.tracking import registry
from catsdogs.tracking.store import connect
decide = registry.champion_decision
def slow_decision(*args, **kwargs):
    time.sleep(0.5)
    return decide(*args, **kwargs)
registry.champion_decision = slow_decision
store, go, accuracy = sys.argv[1:4]
connect(store)
with mlflow.start_run():
    model = mlflow.create_external_model(name="m" + accuracy.replace(".", "_"))
while not Path(go).exists():
    time.sleep(0.005)
registry.register_candidate(model.model_id, {"val_accuracy": accuracy,
                                             registry.VALIDATION_DATA_TAG: "same photos"})
"""


def champion_accuracy(store: str) -> str:
    version = MlflowClient(store).get_model_version_by_alias(REGISTERED_MODEL,
                                                            CHAMPION)
    return version.tags["val_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_two_compares_at_once_leave_the_better_model_champion(tmp_path: Path, round_: int) -> None:
    store, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    connect(store)  # the tables exist before the race
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, store, str(go), accuracy],
                                   stderr=subprocess.PIPE, text=True)
                  for accuracy in ("0.7000", "0.8000")]
    time.sleep(8)  # both imported and waiting
    go.touch()
    for process in contenders:
        assert process.wait(timeout=120) == 0, process.stderr.read()[-2000:]
    assert champion_accuracy(store) == "0.8000"


def external_model(name: str) -> str:
    with mlflow.start_run():
        return mlflow.create_external_model(name=name).model_id


def test_a_model_from_uncommitted_changes_waits_as_challenger_unless_promoted(
    tmp_path: Path
) -> None:
    connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    tags = {"val_accuracy": "0.9000", registry.VALIDATION_DATA_TAG: "v"}
    dirty = registry.register_candidate(external_model("a"), tags, uncommitted=["params.yaml"])
    assert dirty.alias == "challenger" and "uncommitted changes (params.yaml)" in dirty.reason
    version = MlflowClient().get_model_version(REGISTERED_MODEL, dirty.version)
    assert version.tags["git_dirty"] == "true"
    assert version.tags[registry.UNCOMMITTED_TAG] == "params.yaml"
    promoted = registry.register_candidate(external_model("b"), tags, promote=True,
                                           uncommitted=["src/catsdogs/models/architectures.py"])
    assert promoted.alias == "champion"


def test_uncommitted_paths_leave_out_what_a_run_writes(tmp_path: Path) -> None:
    sh(tmp_path, "git", "init", "-q")
    for path in ("params.yaml", "dvc.lock", "metrics/eval/m.json", "src/x.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("1\n")
    commit(tmp_path, "results")
    assert registry.uncommitted_paths(tmp_path) == []
    for path in ("dvc.lock", "metrics/eval/m.json"):
        (tmp_path / path).write_text("2\n")
    assert registry.uncommitted_paths(tmp_path) == []
    (tmp_path / "src/x.py").write_text("2\n")
    (tmp_path / "new.txt").write_text("untracked: not the code a commit names\n")
    assert registry.uncommitted_paths(tmp_path) == ["src/x.py"]
    assert registry.uncommitted_paths(tmp_path.parent / "not-a-repo") == []
