"""Reports on a change: like-for-like numbers, noise told from change, and the workflow.

`catsdogs pr-report` runs for real on two-commit repositories of the tiny synthetic data:
with a DVC remote (the committed recipe; only what the change made stale retrains) and
without one (a profile run at both revisions). The comparison itself is checked on results
small enough to count by hand.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import PROJECT_ROOT, another_kind_of_cpu, commit, make_project, sh, small_params, write_params
from mlflow.tracking import MlflowClient
from test_charts import charts_in

from catsdogs.cli.main import main
from catsdogs.evaluation.stats import compare_paired, wilson_interval
from catsdogs.reports.comparison import UNTOUCHED, compare_models, param_changes
from catsdogs.reports.report import COMMENT_LIMIT, changed_models_charts, render
from catsdogs.reports.results import Results

# -- the arithmetic -----------------------------------------------------------------------


def test_wilson_interval_of_115_out_of_200() -> None:
    low, high = wilson_interval(115, 200)
    assert (round(low, 4), round(high, 4)) == (0.5057, 0.6415)


def test_mcnemar_counts_fixed_and_broken_photos() -> None:
    base = [True] * 10 + [False] * 10          # right on photos 1-10
    head = [True] * 8 + [False] * 2 + [True] * 10  # breaks 9-10, fixes 11-20
    result = compare_paired(base, head)
    assert (result.fixed, result.broken, result.photos) == (10, 2, 20)
    assert result.p_value == pytest.approx(0.03857, abs=1e-5)  # 2 * P(X <= 2), X ~ B(12, 1/2)
    assert result.verdict == "better"
    assert compare_paired(head, base).verdict == "worse"
    assert compare_paired(base, [*base[:9], False, *base[10:]]).verdict == "within noise"


def results(val: float, correct: list[bool], *, recipe: dict | None = None) -> Results:
    """Results of one model `m` on len(correct) test photos: right where `correct` says."""
    photos = [f"p{i}.jpg" for i in range(len(correct))]
    actual = ["dog"] * len(correct)
    predicted = ["dog" if c else "cat" for c in correct]
    return Results(
        train={"m": {"val_accuracy": val}},
        evaluation={"m": {"accuracy": sum(correct) / len(correct), "count": len(correct)}},
        predictions={"m": pd.DataFrame({"path": photos, "actual": actual, "predicted": predicted})},
        recipe={"m": recipe or {"train.epochs": 20, "models.m.dropout": 0.2}},
        data={"splits": {"validation": {"total": 800}}},
    )


def test_a_change_made_by_the_params_is_compared_photo_by_photo() -> None:
    base = results(0.60, [True] * 10 + [False] * 10)
    head = results(0.70, [True] * 8 + [False] * 2 + [True] * 10,
                   recipe={"train.epochs": 20, "models.m.dropout": 0.3})
    changes = param_changes({"models": {"m": {"dropout": 0.2}}}, {"models": {"m": {"dropout": 0.3}}})
    assert changes.to_dict("records") == [{"param": "models.m.dropout", "base": 0.2, "head": 0.3}]
    [report] = compare_models(base, head, set(changes["param"]))
    assert (report.paired.fixed, report.paired.broken, report.verdict) == (10, 2, "better")
    assert str(report.base_test) == "0.5000 (0.299-0.701)"
    markdown = render(title="t", provenance=[], params=changes, reports=[report], leaderboard=None)
    row = next(line for line in markdown.splitlines() if line.startswith("| m "))
    assert [c.strip() for c in row.split("|")[6:11]] == ["+0.4000", "10", "2", "0.0386", "better"]


def test_numbers_made_under_settings_the_change_did_not_set_are_not_compared() -> None:
    base = results(0.60, [True] * 10 + [False] * 10)
    head = results(0.55, [True] * 9 + [False] * 11, recipe={"train.epochs": 2, "models.m.dropout": 0.2})
    [report] = compare_models(base, head, changed=set())
    assert report.unexplained == {"train.epochs": (20, 2)} and report.paired is None
    markdown = render(title="t", provenance=[], params=param_changes({}, {}), reports=[report],
                      leaderboard=None)
    row = next(line for line in markdown.splitlines() if line.startswith("| m "))
    assert [c.strip() for c in row.split("|")[6:11]] == ["-", "-", "-", "-", "not comparable"]
    assert "- m: `train.epochs` 20 (base) vs 2 (head)" in markdown


def test_new_pretrained_weights_are_an_input_change_the_params_explain() -> None:
    recipe = {"train.epochs": 20, "data:data/split/manifest.csv": "m1",
              "data:data/pretrained/transfer": "weights-1"}
    base = results(0.60, [True] * 10 + [False] * 10, recipe=recipe)
    head = results(0.70, [True] * 12 + [False] * 8,
                   recipe={**recipe, "data:data/pretrained/transfer": "weights-2"})
    for changed, compared in (({"pretrained.transfer.url"}, True),
                              ({"pretrained.transfer"}, True),
                              ({"pretrained.cnn"}, False), (set(), False)):
        [report] = compare_models(base, head, changed)
        assert (report.note == "") is compared, changed
        if not compared:
            assert report.unexplained == {"data:data/pretrained/transfer": ("weights-1", "weights-2")}


def test_numbers_made_on_different_machines_get_no_verdict() -> None:
    epyc = {"fingerprint": "46466cdd5c66", "cpu": "AMD EPYC", "onednn_isa": "avx512_core_bf16",
            "cores": "2", "tensorflow": "2.21.0"}
    xeon = {**epyc, "fingerprint": "0b1c2d3e4f50", "cpu": "Intel Xeon", "onednn_isa": "avx2"}
    base = results(0.60, [True] * 10 + [False] * 10)
    head = results(0.70, [True] * 8 + [False] * 2 + [True] * 10)
    base.machine["m"], head.machine["m"] = epyc, xeon
    [report] = compare_models(base, head, changed=set())
    assert report.verdict == "not comparable: made on different machines"
    assert report.paired is None and report.machines == (epyc, xeon)
    markdown = render(title="t", provenance=[], params=param_changes({}, {}), reports=[report],
                      leaderboard=None)
    row = next(line for line in markdown.splitlines() if line.startswith("| m "))
    assert [c.strip() for c in row.split("|")[6:11]] == [
        "-", "-", "-", "-", "not comparable: made on different machines"]
    assert ("- m: base AMD EPYC, avx512_core_bf16, 2 cores, TensorFlow 2.21.0 (46466cdd5c66); "
            "head Intel Xeon, avx2, 2 cores, TensorFlow 2.21.0 (0b1c2d3e4f50)") in markdown
    # One machine on both sides, or a side that does not say: compared as before.
    head.machine["m"] = epyc
    assert compare_models(base, head, changed=set())[0].verdict == "better"
    del head.machine["m"]
    assert compare_models(base, head, changed=set())[0].verdict == "better"


def test_whole_number_params_print_as_written() -> None:
    changes = param_changes({"models": {"m": {"dense_units": 128, "dropout": 0.2}}},
                            {"models": {"m": {"dense_units": 64, "dropout": 0.25}}})
    markdown = render(title="t", provenance=[], params=changes, reports=[], leaderboard=None)
    assert params_rows(markdown) == [["models.m.dense_units", "128", "64"],
                                     ["models.m.dropout", "0.2", "0.25"]]


# -- like for like: each side retrained here where the two come from two machines -------------

EPYC = {"fingerprint": "46466cdd5c66", "cpu": "AMD EPYC", "onednn_isa": "avx512_core_bf16",
        "cores": "2", "tensorflow": "2.21.0"}
AVX2 = {**EPYC, "fingerprint": "584b650f97d1", "onednn_isa": "avx2"}


def on(machine: dict, *models: str) -> Results:
    """Results of `models` (one photo each) made on `machine`."""
    made = Results()
    for model in models:
        made.train[model] = {"val_accuracy": 0.5}
        made.evaluation[model] = {"accuracy": 1.0, "count": 1}
        made.machine[model] = machine
    return made


def test_only_models_whose_sides_come_from_two_machines_are_retrained_where_made_elsewhere() -> None:
    from catsdogs.reports.pull_request import made_elsewhere

    base = on(EPYC, "m1", "m2", "m3")
    head = on(EPYC, "m2", "m3")
    head.train["m1"], head.evaluation["m1"], head.machine["m1"] = {"val_accuracy": 0.6}, \
        {"accuracy": 1.0, "count": 1}, AVX2
    # m1: the head retrained it here (AVX2), the base's came from the EPYC: the base retrains.
    # m2, m3: both sides from the EPYC (DVC's run cache hands back what any machine made):
    # retrained here too, when compared; the report compares only what the change touches.
    assert made_elsewhere(base, head, AVX2["fingerprint"]) == {"base": {"m1", "m2", "m3"},
                                                               "head": {"m2", "m3"}}
    assert made_elsewhere(base, head, AVX2["fingerprint"], ["m1"]) == {"base": {"m1"},
                                                                       "head": set()}
    # Run on a third kind of machine: both sides of m1 retrain there.
    assert made_elsewhere(base, head, "0123456789ab", ["m1"]) == {"base": {"m1"},
                                                                  "head": {"m1"}}
    # A side that records no machine may come from any: it retrains.
    del head.machine["m1"]
    assert made_elsewhere(base, head, AVX2["fingerprint"], ["m1"]) == {"base": {"m1"},
                                                                       "head": {"m1"}}


def served(results: Results):
    """A read function serving `results` as a revision's files, read when asked."""
    def read(path: str) -> str | None:
        if path == "params.yaml":
            return yaml.safe_dump({"models": {key: {} for key in results.train}})
        if path == "metrics/machines.json":
            return json.dumps(results.machine)
        folder, _, name = path.removeprefix("metrics/").rpartition("/")
        found = {"train": results.train, "eval": results.evaluation}.get(folder, {})
        model = name.removesuffix(".json")
        return json.dumps(found[model]) if model in found else None
    return read


def test_like_for_like_remakes_each_side_made_elsewhere_once() -> None:
    from catsdogs.reports.pull_request import like_for_like
    from catsdogs.reports.retraining import Made

    sides = {"base": on(EPYC, "m1", "m2"), "head": on(EPYC, "m2")}
    sides["head"].train["m1"], sides["head"].evaluation["m1"] = {"val_accuracy": 0.6}, \
        {"accuracy": 1.0, "count": 1}
    sides["head"].machine["m1"] = AVX2
    asked = []

    def maker(side: str):
        def make(models):
            asked.append((side, list(models)))
            for model in models:  # retrained here: now this machine's
                sides[side].machine[model] = AVX2
            return Made(served(sides[side]), ran=(f"train@{models[0]}",), retrained=tuple(models))
        return make

    made = {side: Made(served(results)) for side, results in sides.items()}
    made, replaced = like_for_like({s: maker(s) for s in sides}, made, AVX2["fingerprint"],
                                   ["m1"])
    assert asked == [("base", ["m1"])]
    assert made["base"].retrained == ("m1",) and made["head"].retrained == ()
    assert made["base"].ran == ("train@m1",)
    assert made["base"].results().machine["m1"] == AVX2
    assert replaced == {"base": {"m1": EPYC}, "head": {}}
    # On a third kind of machine both sides of m1 retrain there, once each; m2, which the
    # change did not touch, is not compared, and not retrained.
    third = {**AVX2, "fingerprint": "0123456789ab", "onednn_isa": "avx512_core"}
    sides["base"].machine["m1"] = EPYC
    asked.clear()

    def maker_on(side: str):
        def make(models):
            asked.append((side, list(models)))
            for model in models:
                sides[side].machine[model] = third
            return Made(served(sides[side]), retrained=tuple(models))
        return make

    made = {side: Made(served(results)) for side, results in sides.items()}
    made, replaced = like_for_like({s: maker_on(s) for s in sides}, made, third["fingerprint"],
                                   ["m1"])
    assert sorted(asked) == [("base", ["m1"]), ("head", ["m1"])]
    assert replaced == {"base": {"m1": EPYC}, "head": {"m1": AVX2}}


def test_fine_tunes_of_a_retrained_model_retrain_after_it() -> None:
    from catsdogs.zoo.stages import training_stage, with_fine_tunes

    params = {"models": {"a": {}, "b": {}}, "finetune": {"a_tuned": {"init_from": "a"},
                                                          "b_tuned": {"init_from": "b"}}}
    assert with_fine_tunes(params, ["a"]) == ["a", "a_tuned"]
    assert [training_stage(params, m) for m in with_fine_tunes(params, ["b_tuned", "a"])] == [
        "train@a", "finetune@a_tuned", "finetune@b_tuned"]


def test_the_report_says_where_each_side_was_made_and_why() -> None:
    from catsdogs.reports.provenance import made_where

    base, head = on(EPYC, "m1", "m2"), on(EPYC, "m2")
    head.train["m1"], head.evaluation["m1"], head.machine["m1"] = {"val_accuracy": 0.6}, \
        {"accuracy": 1.0, "count": 1}, AVX2
    base.machine["m1"] = AVX2  # retrained here
    lines = made_where(base, head, AVX2, {"base": {"m1": EPYC}, "head": {}},
                       {"base": ("train@m1", "evaluate@m1"), "head": ("train@m1",)})
    assert lines[0] == "This machine: AMD EPYC, avx2, 2 cores, TensorFlow 2.21.0 (584b650f97d1)."
    assert ("- `m1`: base here (retrained here: its numbers had been made on AMD EPYC, "
            "avx512_core_bf16, 2 cores, TensorFlow 2.21.0 (46466cdd5c66)); head here (trained "
            "here by `train@m1`)") in lines
    assert ("- `m2`: base AMD EPYC, avx512_core_bf16, 2 cores, TensorFlow 2.21.0 (46466cdd5c66) "
            "(as it was); head AMD EPYC, avx512_core_bf16, 2 cores, TensorFlow 2.21.0 "
            "(46466cdd5c66) (as it was)") in lines


def test_the_plan_says_what_will_train_before_anything_does() -> None:
    from catsdogs.reports.provenance import plan_committed, plan_profile

    assert plan_committed(["train@m1"], ["train@m1", "train@m2"]) == (
        "Plan: the head trains 1 model(s) the change left stale (`train@m1`); 2 model(s) the "
        "change touches are compared (`train@m1`, `train@m2`), each side retrained here "
        "wherever it was made on another machine: at worst 4 trainings. The other models are "
        "unchanged: nothing they depend on changed.")
    touched = {"train@m1": ["param models.m1.dropout"], "evaluate@m1": ["after train@m1"],
               "compare": ["after train@m1"]}
    assert plan_profile("fast", touched, ["m1"], ["m2"]).startswith(
        "Plan: under the `fast` profile the change touches `train@m1` (param models.m1.dropout). "
        "Trained at both revisions: m1; not trained, as nothing they depend on changed: m2.")
    assert plan_profile("fast", {}, [], ["m1", "m2"]).startswith(
        "Plan: under the `fast` profile the change touches no training. Trained at both "
        "revisions: none; not trained, as nothing they depend on changed: m1, m2.")
    assert "every model" in plan_profile("fast", {}, None, ())


def test_models_not_trained_get_the_base_numbers_where_known_and_removed_ones_a_row() -> None:
    base = results(0.60, [True] * 10 + [False] * 10)
    base.train["gone"], base.evaluation["gone"] = {"val_accuracy": 0.7}, {"accuracy": 0.5, "count": 20}
    reports = {r.model: r for r in compare_models(base, Results(), set(), untouched=["m", "new"],
                                                  removed=["gone", "never_trained"])}
    assert reports["m"].verdict == "unchanged: nothing it depends on changed"
    assert str(reports["m"].base_test) == "0.5000 (0.299-0.701)" and reports["m"].head_test is None
    assert reports["new"].verdict == "unchanged: nothing it depends on changed"
    assert reports["new"].base_test is None
    assert reports["gone"].verdict == reports["never_trained"].verdict == "removed: no head numbers"


def test_stale_stages_are_changed_code_and_params_not_missing_outputs() -> None:
    from catsdogs.reports.revisions import stale_stages

    status = {  # `dvc status --json` in a clone without the DVC cache, of a branch
        "split": [{"changed deps": {"data/raw": "deleted"}},
                  {"changed outs": {"data/split": "not in cache"}}],
        "train@m1": [{"changed deps": {"src/catsdogs/training/train.py": "modified",
                                       "params.yaml": {"models.m1": "modified"}}}],
        "evaluate@m1": ["changed command"],
    }
    assert stale_stages(status) == {
        "train@m1": ["changed deps src/catsdogs/training/train.py (modified)",
                     "changed deps params.yaml: models.m1 (modified)"],
        "evaluate@m1": ["changed command"]}


def test_stale_committed_results_open_the_report_with_the_refresh() -> None:
    from catsdogs.reports.provenance import stale_results

    assert stale_results({}) == []
    lines = stale_results({"train@m1": ["changed deps src/catsdogs/training/train.py (modified)"]})
    assert lines[0].startswith("> **Stale committed results.** This branch changes what "
                               "`train@m1` computes")
    assert "`dvc repro && dvc push`, then commit `dvc.lock` and `metrics/`" in lines[0]
    assert "> - `train@m1`: changed deps src/catsdogs/training/train.py (modified)" in lines


def test_identical_results_are_unchanged_and_new_models_are_named() -> None:
    base = results(0.60, [True] * 10 + [False] * 10)
    head = results(0.60, [True] * 10 + [False] * 10)
    head.train["n"] = {"val_accuracy": 0.9}
    head.evaluation["n"] = {"accuracy": 0.9, "count": 20}
    reports = {r.model: r for r in compare_models(base, head, set())}
    assert reports["m"].verdict == "unchanged" and reports["m"].paired.p_value == 1.0
    assert reports["n"].verdict == "new: no base numbers"


# -- catsdogs report and pr-report on real repositories ----------------------------------------


def two_models(params: dict) -> dict:
    """The zoo cut to its first two entries (small CNNs): a real pipeline, quick to run."""
    params["models"] = dict(list(params["models"].items())[:2])
    params["finetune"] = {}
    return params


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The per-model table: model -> its cells."""
    rows = {}
    for line in markdown.split("## Accuracy per model")[1].splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 10 and cells[0] not in ("model", "") and not cells[0].startswith(":-"):
            rows[cells[0]] = cells
    return rows


def params_rows(markdown: str) -> list[list[str]]:
    section = markdown.split("## Params this change sets")[1].split("## ")[0]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("|") and "---" not in line][1:]


def pr_report(repo: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["pr-report", "--repo", str(repo), "--out",
                                       str(repo / "reports/pr/report.md"), *args])
    assert result.exit_code == 0, result.output
    return (repo / "reports/pr/report.md").read_text()


@pytest.mark.slow
def test_pr_report_with_a_remote_retrains_only_what_the_change_made_stale(
    tmp_path: Path, dataset_zip: Path, monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = two_models(small_params(dataset_zip))
    first, second = params["models"]
    origin = make_project(tmp_path / "origin", params)
    sh(origin, "dvc", "repro")
    sh(origin, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    sh(origin, "dvc", "push")
    base = commit(origin, "results")  # main carries its results
    params["models"][first]["dropout"] = 0.35
    write_params(origin / "params.yaml", params)
    commit(origin, f"{first}: more dropout")  # a pull request that commits no results

    ci = tmp_path / "ci"  # CI's fresh clone: no DVC cache, no MLflow store
    sh(tmp_path, "git", "clone", "-q", str(origin), str(ci))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    # CI's runner is another kind of machine: oneDNN held to a lesser instruction set
    # computes as one does.
    cap, isa = another_kind_of_cpu()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    report = pr_report(ci, "--base", base)

    assert f"Plan: the head trains 1 model(s) the change left stale (`train@{first}`)" in report
    assert f"then `dvc repro` ran `train@{first}`, `evaluate@{first}`, `compare`." in report
    # The head's dvc.lock is stale: the report says so first, with the refresh.
    assert report.split("\n")[2].startswith(
        f"> **Stale committed results.** This branch changes what `compare`, `train@{first}` "
        "compute")
    assert params_rows(report) == [[f"models.{first}.dropout", "0.2", "0.35"]]
    # The base's committed numbers came from the other machine: retrained here, in a clone.
    [kept] = (ci / ".catsdogs/results").glob(f"{base[:12]}-committed-*")
    machines = {side: json.loads(text) for side, text in (
        ("committed", sh(ci, "git", "show", f"{base}:metrics/machines.json")),
        ("base", (kept / "metrics/machines.json").read_text()),
        ("head", (ci / "metrics/machines.json").read_text()))}
    assert machines["committed"][first]["onednn_isa"] != isa
    assert machines["base"][first]["onednn_isa"] == machines["head"][first]["onednn_isa"] == isa
    assert machines["base"][first]["fingerprint"] == machines["head"][first]["fingerprint"]
    assert machines["head"][second] == machines["committed"][second]  # pulled, not retrained
    assert (f"`{first}`: base here (retrained here: its numbers had been made on "
            f"{machines['committed'][first]['cpu']}, {machines['committed'][first]['onednn_isa']}"
            ) in report
    assert f"head here (trained here by `train@{first}`)" in report
    rows = table_rows(report)
    evaluated = {side: json.loads(text) for side, text in (
        ("base", (kept / f"metrics/eval/{first}.json").read_text()),
        ("head", (ci / f"metrics/eval/{first}.json").read_text()))}
    assert rows[first][3].startswith(f"{evaluated['base']['accuracy']:.4f}")
    assert rows[first][4].startswith(f"{evaluated['head']['accuracy']:.4f}")
    assert rows[first][6].isdigit() and rows[first][7].isdigit()
    assert re.fullmatch(r"[0-9.e-]+", rows[first][8])
    assert rows[first][9] in ("better", "worse", "within noise", "unchanged")
    # Not stale, not retrained: the committed numbers, said unchanged without a comparison.
    assert rows[second][1] != "-" and rows[second][2] == "-"
    assert rows[second][6:] == ["-", "-", "-", "unchanged: nothing it depends on changed"]
    assert "Not compared" not in report and "Made on different machines" not in report
    assert (tmp_path / "summary.md").read_text().startswith("# catsdogs: HEAD")
    assert "![" not in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_pr_report_without_a_remote_runs_the_profile_at_both_revisions(
    tmp_path: Path, dataset_zip: Path, mlflow_server: str, monkeypatch
) -> None:
    # The team's tracking server: a report's short-recipe runs must not reach it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    params = two_models(small_params(dataset_zip, epochs=3))
    first, second = params["models"]
    repo = make_project(tmp_path / "repo", params)
    (repo / "profiles.yaml").write_text(yaml.safe_dump(
        {"quick": {"train.epochs": 1, "models.*.epochs": 1}}, sort_keys=False))
    # main carries the results of its own recipe in metrics/ (here made up, and recognisable):
    # numbers of another recipe, which a report under the profile must not show as its own.
    for name in params["models"]:
        for folder, text in (("train", '{"val_accuracy": 0.123}'),
                             ("eval", '{"accuracy": 0.321, "count": 4}')):
            (repo / f"metrics/{folder}").mkdir(parents=True, exist_ok=True)
            (repo / f"metrics/{folder}/{name}.json").write_text(text)
    base = commit(repo, "a quick profile")
    params["models"][first]["dropout"] = 0.35
    write_params(repo / "params.yaml", params)
    commit(repo, f"{first}: more dropout")

    report = pr_report(repo, "--base", base, "--profile", "quick", "--results-dir",
                       str(tmp_path / "kept"))
    assert "the `quick` profile (train.epochs=1, models.*.epochs=1), run at both revisions" in report
    # Worked out before training: the change touches one model, the only one trained, at
    # both revisions; the other is unchanged, with no numbers made up for it.
    assert (f"the change touches `train@{first}` (param models.{first}.dropout). Trained at "
            f"both revisions: {first}; not trained, as nothing they depend on changed: "
            f"{second}.") in report
    for side in ("Base", "head"):
        ran = re.search(fr"{side}: ran (.*?)[.;]", report)[1]
        assert f"`train@{first}`" in ran and f"`evaluate@{first}`" in ran
        assert f"@{second}`" not in ran and "`compare`" not in ran
    # The head started from the base's run: the data stages the change did not touch, whose
    # records DVC's run cache cannot bring back, did not run again.
    assert "`split`" in re.search(r"Base: ran (.*?);", report)[1]
    assert "`split`" not in re.search(r"head: ran (.*?)\.", report)[1]
    assert params_rows(report) == [[f"models.{first}.dropout", "0.2", "0.35"]]  # no profile keys
    [kept_base] = (tmp_path / "kept").glob(f"{base[:12]}-quick-*")
    assert json.loads((kept_base / "made.json").read_text()) == {"models": [first], "retrained": []}
    assert not (kept_base / f"metrics/train/{second}.json").exists()
    trained = json.loads((kept_base / f"metrics/train/{first}.json").read_text())
    history = pd.read_csv(kept_base / f"metrics/history/{first}.csv")
    assert len(history) == 1  # the profile's epochs, not params.yaml's 3
    rows = table_rows(report)
    assert rows[first][1].startswith(f"{trained['val_accuracy']:.4f}")
    assert rows[first][9] in ("better", "worse", "within noise", "unchanged")
    assert rows[second][1:] == ["-"] * 8 + ["unchanged: nothing it depends on changed"]
    assert "0.123" not in report and "0.321" not in report and "## Leaderboard" not in report

    # The runs went to a store of their own, kept with the results; the server saw nothing.
    server = MlflowClient(mlflow_server)
    assert server.search_registered_models() == []
    assert server.get_experiment_by_name("catsdogs") is None
    kept_store = MlflowClient(f"sqlite:///{kept_base / 'mlflow.db'}")
    assert kept_store.get_experiment_by_name("catsdogs") is not None

    again = pr_report(repo, "--base", base, "--profile", "quick", "--results-dir",
                      str(tmp_path / "kept"))
    assert f"Base: reused from {tmp_path / 'kept'}; head: reused from" in again

    # A second push, on a runner of another kind (oneDNN held to less): the first push's
    # results were made on this one, and DVC's run cache hands them back to the base's clone;
    # the head retrains the changed model there, so the base retrains it too, past the cache.
    params["models"][first]["dropout"] = 0.4
    write_params(repo / "params.yaml", params)
    commit(repo, f"{first}: even more dropout")
    cap, isa = another_kind_of_cpu()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    other = pr_report(repo, "--base", base, "--profile", "quick", "--results-dir",
                      str(tmp_path / "kept"))
    assert "Base: reused" not in other
    kept_bases = {path.name.rsplit("-", 1)[1]: path
                  for path in (tmp_path / "kept").glob(f"{base[:12]}-quick-*")}
    assert len(kept_bases) == 2  # kept by machine: the first push's is not this one's
    machines = {fingerprint: json.loads((path / "metrics/machines.json").read_text())
                for fingerprint, path in kept_bases.items()}
    [here] = [fingerprint for fingerprint, made in machines.items()
              if made[first]["onednn_isa"] == isa]
    assert machines[here][first]["fingerprint"] == here
    assert json.loads((kept_bases[here] / "made.json").read_text()) == {
        "models": [first], "retrained": [first]}
    assert f"`{first}`: base here (retrained here: its numbers had been made on" in other
    assert f"head here (trained here by `train@{first}`)" in other
    rows = table_rows(other)
    assert rows[first][9] in ("better", "worse", "within noise", "unchanged")
    assert rows[first][8] != "-"
    assert rows[second][9] == "unchanged: nothing it depends on changed"


def write_results(repo: Path, dropout: float, val: float, test: float) -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    name = next(iter(params["models"]))
    params["models"][name]["dropout"] = dropout
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for folder in ("train", "eval", "history", "predictions"):
        (repo / "metrics" / folder).mkdir(parents=True, exist_ok=True)
    (repo / f"metrics/train/{name}.json").write_text(json.dumps({"val_accuracy": val, "epochs": 2}))
    (repo / f"metrics/eval/{name}.json").write_text(json.dumps(
        {"accuracy": test, "count": 4, "confusion_matrix": [[2, 0], [2 - round(test * 4 - 2), 0]]}))
    (repo / f"metrics/history/{name}.csv").write_text(
        f"epoch,loss,accuracy,val_loss,val_accuracy\n1,0.7,0.5,0.7,0.5\n2,0.6,0.6,0.6,{val}\n")
    right = round(test * 4)
    (repo / f"metrics/predictions/{name}.csv").write_text("path,actual,predicted\n" + "".join(
        f"p{i}.jpg,dog,{'dog' if i < right else 'cat'}\n" for i in range(4)))


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A git repository with two commits of different committed results."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    write_results(repo, dropout=0.2, val=0.6, test=0.5)
    commit(repo, "base")
    write_results(repo, dropout=0.3, val=0.7, test=0.75)
    commit(repo, "head")
    return repo


def report(repo: Path, *args: str):
    return CliRunner().invoke(main, ["report", "--repo", str(repo), "--out",
                                     str(repo / "out/report.md"), *args])


def test_report_compares_committed_results(repo: Path) -> None:
    result = report(repo, "--base", "HEAD~1", "--head", "HEAD")
    assert result.exit_code == 0, result.output
    text = (repo / "out/report.md").read_text()
    name = next(iter(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]))
    assert params_rows(text) == [[f"models.{name}.dropout", "0.2", "0.3"]]
    row = table_rows(text)[name]
    assert row[3].startswith("0.5000") and row[4].startswith("0.7500")
    assert row[5:9] == ["+0.2500", "1", "0", "1"] and row[9] == "within noise"
    for figure in (f"{name}_curves.png", f"{name}_confusion.png"):
        assert (repo / "out/figures" / figure).stat().st_size > 1000
        assert f"(figures/{figure})" in text


def test_the_comment_draws_the_changed_model_as_mermaid_and_links_no_image(repo: Path) -> None:
    result = report(repo, "--base", "HEAD~1", "--head", "HEAD")
    assert result.exit_code == 0, result.output
    name = next(iter(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]))
    comment = (repo / "out/report.comment.md").read_text()
    assert "![" not in comment and len(comment) <= COMMENT_LIMIT
    accuracy, loss = charts_in(comment)
    assert accuracy["title"] == f"{name}: validation accuracy per epoch"
    assert accuracy["epochs"] == ["1", "2"]
    assert accuracy["lines"] == {"base": [0.5, 0.6], "head": [0.5, 0.7]}
    assert set(loss["lines"]) == {"base", "head"}
    section = comment.split(f"### {name}")[1]
    assert "| **cat** | 2 | 0 | 2 | 0 |" in section and "| **dog** | 2 | 0 | 1 | 0 |" in section
    # The local report holds the same charts and the PNG figures.
    text = (repo / "out/report.md").read_text()
    assert charts_in(text) == [accuracy, loss] and f"(figures/{name}_curves.png)" in text


def test_no_model_changed_no_chart(repo: Path) -> None:
    result = report(repo, "--base", "HEAD", "--head", "HEAD")
    assert result.exit_code == 0, result.output
    comment = (repo / "out/report.comment.md").read_text()
    assert "```mermaid" not in comment and "Curves and confusion" not in comment


def many_models(count: int, epochs: int) -> tuple[Results, Results]:
    def side(offset: float) -> Results:
        history = pd.DataFrame({"epoch": range(1, epochs + 1),
                                "val_accuracy": [0.5 + offset + e / (4 * epochs) for e in range(epochs)],
                                "val_loss": [0.7 - e / (2 * epochs) for e in range(epochs)]})
        models = [f"model_{i:02}" for i in range(count)]
        return Results(train={m: {"val_accuracy": 0.7} for m in models},
                       evaluation={m: {"accuracy": 0.5, "count": 4,
                                       "confusion_matrix": [[1, 1], [1, 1]]} for m in models},
                       history={m: history for m in models})
    return side(0.0), side(0.01)


def test_untouched_models_get_no_chart() -> None:
    base, head = many_models(2, 3)
    reports = compare_models(base, head, set(), untouched=["model_01"])
    assert [r.note for r in reports] == ["", UNTOUCHED]
    assert list(changed_models_charts(reports, base, head, ["cat", "dog"])) == ["model_00"]


def test_a_comment_with_too_many_charts_leaves_the_last_out_and_says_so() -> None:
    base, head = many_models(40, 60)
    reports = compare_models(base, head, set())
    drawn = changed_models_charts(reports, base, head, ["cat", "dog"])
    sections = {"title": "t", "provenance": [], "params": param_changes({}, {}),
                "reports": reports, "leaderboard": None, "model_charts": drawn}
    whole = render(**sections)
    assert len(whole) > COMMENT_LIMIT and len(charts_in(whole)) == 80
    comment = render(**sections, limit=COMMENT_LIMIT - 1000)
    assert len(comment) <= COMMENT_LIMIT - 1000
    kept = [c["title"].split(":")[0] for c in charts_in(comment)][::2]
    assert 0 < len(kept) < 40 and kept == [f"model_{i:02}" for i in range(len(kept))]
    left_out = ", ".join(f"model_{i:02}" for i in range(len(kept), 40))
    assert f"characters: {left_out} (their figures" in comment
    assert "| model_39 |" in comment  # every verdict stays

def test_report_says_when_the_two_revisions_trained_on_different_machines(repo: Path) -> None:
    name = next(iter(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]))
    for cpu in ("Intel Xeon", "AMD EPYC"):
        (repo / "metrics/machines.json").write_text(json.dumps({name: {
            "fingerprint": cpu[:4].lower() * 3, "cpu": cpu, "onednn_isa": "avx2", "cores": "2",
            "tensorflow": "2.21.0"}}))
        commit(repo, f"results made on {cpu}")
    result = report(repo, "--base", "HEAD~1", "--head", "HEAD")
    assert result.exit_code == 0, result.output
    assert table_rows(result.output)[name][9] == "not comparable: made on different machines"
    assert "## Made on different machines" in result.output


def test_report_is_on_the_checked_out_commit_unless_told_the_working_tree(repo: Path) -> None:
    write_results(repo, dropout=0.4, val=0.8, test=0.75)  # a `dvc repro` not yet committed
    name = next(iter(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]))
    head = report(repo, "--base", "HEAD~1")
    assert head.exit_code == 0, head.output
    assert params_rows(head.output) == [[f"models.{name}.dropout", "0.2", "0.3"]]
    assert head.output.startswith("# catsdogs: HEAD (")
    tree = report(repo, "--base", "HEAD~1", "--working-tree")
    assert tree.exit_code == 0, tree.output
    assert params_rows(tree.output) == [[f"models.{name}.dropout", "0.2", "0.4"]]
    assert tree.output.startswith("# catsdogs: working tree vs HEAD~1 (")
    both = report(repo, "--base", "HEAD~1", "--head", "HEAD", "--working-tree")
    assert both.exit_code == 2 and "give one" in both.output


def test_report_says_when_nothing_changed(repo: Path) -> None:
    result = report(repo, "--base", "HEAD", "--head", "HEAD")
    assert result.exit_code == 0, result.output
    assert "No parameter changes." in result.output
    assert all(row[9] == "unchanged" for row in table_rows(result.output).values())


def test_report_against_a_base_without_results(repo: Path) -> None:
    # A commit of the empty tree: a base from before the pipeline existed.
    empty_tree = sh(repo, "git", "hash-object", "-t", "tree", "/dev/null").strip()
    base = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree",
                           empty_tree, "-m", "no results yet"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()
    result = report(repo, "--base", base)
    assert result.exit_code == 0, result.output
    assert all(row[9] == "new: no base numbers" and row[1] == "-"
               for row in table_rows(result.output).values())


def test_unknown_base_is_a_clear_error(repo: Path) -> None:
    result = report(repo, "--base", "origin/nope")
    assert result.exit_code == 1 and "unknown git revision 'origin/nope'" in result.output


def test_workflows_validate_against_the_github_schema() -> None:
    workflows = sorted((PROJECT_ROOT / ".github/workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, workflows)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pull_requests_deselect_the_committed_results_tests_and_main_keeps_them(tmp_path: Path) -> None:
    workflow = yaml.safe_load((PROJECT_ROOT / ".github/workflows/tests.yml").read_text())
    [step] = [s for s in workflow["jobs"]["tests"]["steps"] if "pytest" in s.get("run", "")]
    assert step["env"]["ON_MAIN"] == (
        "${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}")
    # The step's own script, with pytest and the set-up echoed instead of run.
    script = step["run"].replace(".venv/bin/python -m pytest", "echo pytest")
    script = "\n".join(line for line in script.splitlines() if "pip install" not in line)
    chosen = {}
    for on_main in ("true", "false"):
        result = subprocess.run(["bash", "-c", script], env={"ON_MAIN": on_main, "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        chosen[on_main] = result.stdout.strip()
    assert chosen == {"true": "pytest", "false": "pytest -m not committed_results"}
    # That expression deselects exactly the committed-results tests.
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-m",
         "not committed_results", "tests/test_committed_results.py", "tests/test_dvc_deps.py"],
        cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert "test_dvc_deps.py::" in collected.stdout
    assert "test_committed_results.py::" not in collected.stdout
    assert "3 deselected" in collected.stdout
    # .ci/run and the README's test command run them all.
    ci = (PROJECT_ROOT / ".ci/run").read_text()
    readme = (PROJECT_ROOT / "README.md").read_text()
    for command in (ci, readme):
        line = next(line for line in command.splitlines() if "-m pytest" in line)
        assert line.rstrip().endswith("-m pytest"), line


def test_stages_run_by_a_report_import_their_own_checkouts_code(tmp_path: Path) -> None:
    # A clone at the base commit must train with the base's code, not with the checkout this
    # interpreter's catsdogs was installed from (the head's).
    from catsdogs.reports.revisions import dvc

    repo = tmp_path / "base"
    (repo / "src/catsdogs").mkdir(parents=True)
    (repo / "src/catsdogs/__init__.py").write_text("MADE_BY = 'the base'\n")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"which": {
        "cmd": "python -c \"import catsdogs; print(catsdogs.__file__, catsdogs.MADE_BY)\" > which.txt",
        "outs": [{"which.txt": {"cache": False}}]}}}))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    dvc(repo, "repro")
    assert (repo / "which.txt").read_text().split() == [
        str((repo / "src/catsdogs/__init__.py").resolve()), "the", "base"]


def test_a_warning_on_stderr_is_not_a_remote(tmp_path: Path, monkeypatch) -> None:
    # DVC prints notices (an update is available, a deprecation) on stderr: only stdout answers.
    from catsdogs.reports import revisions

    def dvc_says(args, **kwargs):
        return subprocess.CompletedProcess(args, 0, stdout="", stderr="WARNING: update available\n")

    monkeypatch.setattr(revisions.subprocess, "run", dvc_says)
    assert revisions.has_remote(tmp_path) is False
    monkeypatch.setattr(revisions.subprocess, "run", lambda args, **kwargs: subprocess.CompletedProcess(
        args, 0, stdout="shared\t/mnt/remote\n", stderr=""))
    assert revisions.has_remote(tmp_path) is True
