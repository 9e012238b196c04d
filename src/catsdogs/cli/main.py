"""The `catsdogs` command: user-facing tools beside the DVC stages.

`catsdogs predict PATH...` classifies photos with a trained model folder (the output of
`train@<model>`), an MLflow model, or a model served by `mlflow models serve`, and prints
one line per image as a table or CSV, or the verdicts as JSON (one array, or JSON Lines).
`catsdogs evaluate PATH` scores a model on a labelled folder or archive, in any layout the
pipeline reads.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from catsdogs.cli.stage_support import setup_logging
from catsdogs.core.errors import UserError
from catsdogs.data.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterable, Sequence

    from catsdogs.inference.predict import Prediction, Skipped

# Skipped files named one by one on stderr; beyond this many, counted by reason.
SKIPS_NAMED = 20
# The pipeline's best model by validation accuracy, written by the compare stage.
CHAMPION_FILE = Path("metrics/champion.json")


def _champion_folder(champion_file: Path = CHAMPION_FILE) -> str:
    """models/<name> of the model `champion_file` names: what --model means when not given."""
    try:
        name = json.loads(champion_file.read_text(encoding="utf-8"))["model"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.BadParameter(
            f"no --model given and '{champion_file}' names no model ({error}); run this in the "
            "project folder after `dvc repro` (or `dvc pull`), or give --model",
            param_hint="--model") from error
    return str(Path("models") / name)


def _load_model(source: str | None):
    """A Keras model from a model folder, a .keras file, or an MLflow models:/ or runs:/ URI;
    a photo-serving pyfunc (`photo_pyfunc`) where the URI names one, as the registry's versions
    are. None: the pipeline's best model (`_champion_folder`)."""
    source = source or _champion_folder()
    if source.startswith(("models:/", "runs:/")):
        from catsdogs.tracking.client import client as tracking

        try:
            tracking.connect()
            if tracking.takes_photos(source):
                return tracking.load_photo_model(source)
            return tracking.load_keras_model(source)
        except tracking.TrackingError as error:
            raise click.BadParameter(str(error), param_hint="--model") from error
    from catsdogs.models.model_file import ModelFileError, load_model_file

    try:
        return load_model_file(Path(source))
    except ModelFileError as error:
        raise click.BadParameter(str(error), param_hint="--model") from error


@click.group()
@click.version_option(package_name="catsdogs")
def main() -> None:
    """catsdogs: a reproducible cats-vs-dogs classifier pipeline (DVC + Keras + MLflow)."""


_MODEL_OPTION_HELP = ("A trained model folder (with model.keras), a .keras file, or an MLflow "
                      "model URI such as models:/catsdogs@champion  [default: the pipeline's "
                      "best model, models/<the model metrics/champion.json names>].")
# Photos `predict` decodes and classifies at a time with a model loaded here, and sends a
# served model in one request (the files themselves, in base64: a few MB a request).
LOCAL_BATCH_SIZE = 64
SERVER_BATCH_SIZE = 16


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_source", default=None,
              help=_MODEL_OPTION_HELP)
@click.option("--server", metavar="URL", default=None,
              help="Send the photo files to a model served by `mlflow models serve` at URL "
                   "(e.g. http://127.0.0.1:5001) instead of loading --model here; the server "
                   "decodes them as training does.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "jsonl"]),
              default="table", show_default=True,
              help="Output: aligned table; CSV; json: one JSON array of {path, label, "
                   "probability_dog} objects (for `jq '.[]'`); jsonl: one such object per line, "
                   "as each batch is classified.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images decoded and classified at a time (bounds memory; with --server, one "
                   "request, at most the served model's cap of 64)  "
                   f"[default: {LOCAL_BATCH_SIZE}; {SERVER_BATCH_SIZE} with --server].")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
              show_default=True,
              help="Refuse images with more pixels than this, read from the file's header "
                   "before decoding (decompression bombs).")
def predict(paths: tuple[Path, ...], model_source: str | None, server: str | None, fmt: str,
            batch_size: int | None, max_pixels: int) -> None:
    """Classify image files and folders (recursively) as cat or dog, with a model loaded
    here (--model) or served over HTTP (--server). Either way each photo is decoded as in
    training, at the model's input size: here, or by the served model from the file's bytes.

    Every file not classified is named on stderr with the reason (beyond 20, counted).
    """
    setup_logging()
    from catsdogs.inference.predict import classify, classify_photos

    def decoded_here(what: str) -> None:
        """--max-pixels is for photos decoded here; a model that takes photos has its own."""
        source = click.get_current_context().get_parameter_source("max_pixels")
        if source is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError(f"--max-pixels is for a model folder decoded here: {what} "
                                   "applies its own cap (split.max_pixels when registered)")

    if server is None:
        model = _load_model(model_source)
        if hasattr(model, "unwrap_python_model"):  # the registry's photo-serving pyfunc
            from catsdogs.inference.photo_pyfunc import MAX_PHOTO_BYTES, MAX_PHOTOS_PER_REQUEST, pyfunc_sender

            decoded_here("a registered model")
            results = classify_photos(
                pyfunc_sender(model), list(paths), max_bytes=MAX_PHOTO_BYTES,
                batch_size=min(batch_size or LOCAL_BATCH_SIZE, MAX_PHOTOS_PER_REQUEST))
        else:
            results = classify(model, list(paths), batch_size=batch_size or LOCAL_BATCH_SIZE,
                               max_pixels=max_pixels)
    else:
        if model_source is not None:
            raise click.UsageError("--model and --server each name the model; give one")
        from catsdogs.inference.photo_pyfunc import MAX_PHOTO_BYTES, MAX_PHOTOS_PER_REQUEST
        from catsdogs.inference.server_client import base_url, server_sender

        decoded_here("a served model")
        if (batch_size or 0) > MAX_PHOTOS_PER_REQUEST:
            raise click.BadParameter(f"{batch_size} photos a request is over the served model's "
                                     f"cap of {MAX_PHOTOS_PER_REQUEST}; pass at most that",
                                     param_hint="--batch-size")
        results = classify_photos(server_sender(base_url(server)), list(paths),
                                  batch_size=batch_size or SERVER_BATCH_SIZE,
                                  max_bytes=MAX_PHOTO_BYTES)
    try:
        count = _print_predictions(results, fmt)
    except UserError as error:  # a server that stopped answering or refused a batch midway
        raise click.ClickException(str(error)) from error
    if count == 0:
        raise click.ClickException(f"no readable image found in: {', '.join(map(str, paths))}")


def _print_predictions(results: Iterable[Prediction | Skipped], fmt: str) -> int:
    """Print each Prediction to stdout in `fmt`, as it comes, and each Skipped to stderr
    (beyond SKIPS_NAMED, counted at the end); return how many were classified."""
    from catsdogs.inference.predict import Skipped, skip_summary

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(["path", "label", "probability_dog"])
    if fmt == "json":  # the array is written as it fills: memory stays one batch
        click.echo("[", nl=False)
    count = 0
    skipped: list[Skipped] = []
    try:
        for result in results:
            if isinstance(result, Skipped):
                skipped.append(result)
                if len(skipped) <= SKIPS_NAMED:  # as they come: a long run shows them early
                    click.echo(f"skipped {result.path}: {result.reason}", err=True)
                continue
            count += 1
            if writer:
                writer.writerow([result.path, result.label, result.probability_dog])
            elif fmt == "json":
                click.echo(("\n  " if count == 1 else ",\n  ") + json.dumps(result.__dict__),
                           nl=False)
            elif fmt == "jsonl":
                click.echo(json.dumps(result.__dict__))
            else:
                click.echo(f"{result.label:<4} {result.probability_dog:8.4f}  {result.path}")
    finally:
        if fmt == "json":
            click.echo("\n]" if count else "]")
    for line in skip_summary(skipped, SKIPS_NAMED):
        click.echo(line, err=True)
    return count


def _report_skipped(skipped: list[Skipped]) -> None:
    """Name the first skipped files on stderr, then count the rest by kind."""
    from catsdogs.inference.predict import skip_summary

    for item in skipped[:SKIPS_NAMED]:
        click.echo(f"skipped {item.path}: {item.reason}", err=True)
    for line in skip_summary(skipped, SKIPS_NAMED):
        click.echo(line, err=True)


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model_source", default=None,
              help=_MODEL_OPTION_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True,
              help="table: the summary and the misclassified files; csv: one row per photo; "
                   "json: the summary as one JSON object.")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path),
              default="params.yaml", show_default=True,
              help="Where split.class_names (which folder and file names mean which class) "
                   "and download.max_files / max_bytes (an archive's caps) are read, when the "
                   "file exists; else the defaults.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images decoded and classified at a time (bounds memory).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Refuse images with more pixels than this.")
def evaluate(path: Path, model_source: str | None, fmt: str, params_path: Path, batch_size: int,
             max_pixels: int) -> None:
    """How good is a model on your photos? PATH is a folder, zip or tar of labelled photos
    in any layout the pipeline reads: the tutorial's train/ + validation/, a folder per class
    at any depth, or files named for their class (cat.1.jpg). Prints accuracy with its 95%
    interval, per-class precision and recall, the confusion matrix and the misclassified
    files; every photo is scored, whatever split a layout gives it."""
    setup_logging()
    from catsdogs.core.params import load_params, read_section
    from catsdogs.data.download import DownloadConfig
    from catsdogs.data.split import SplitConfig
    from catsdogs.inference.collection import PHOTO_COLUMNS, score_collection, summary_lines

    try:
        params = load_params(params_path) if params_path.is_file() else {}
        class_names = (read_section(params, "split", SplitConfig) if "split" in params
                       else SplitConfig()).class_names
        caps = (read_section(params, "download", DownloadConfig) if "download" in params
                else DownloadConfig(url=()))
        model = _load_model(model_source)
        score = score_collection(model, path, class_names=class_names, caps=caps,
                                 batch_size=batch_size, max_pixels=max_pixels)
    except UserError as error:
        raise click.ClickException(str(error)) from error
    _report_skipped(score.skipped)
    if score.photos.empty:
        raise click.ClickException(f"no labelled photo of '{path}' could be read "
                                   f"({len(score.skipped)} file(s) skipped, named above)")
    if fmt == "csv":
        score.photos[PHOTO_COLUMNS].to_csv(sys.stdout, index=False, lineterminator="\n")
    elif fmt == "json":
        click.echo(json.dumps(score.summary(), indent=2))
    else:
        click.echo("\n".join(summary_lines(score.summary())))


def _write_report(
    *, title: str, provenance: list[str], base, head, base_params: dict, head_params: dict,
    out: Path, untouched: Sequence[str] = (), removed: Sequence[str] = (),
) -> str:
    """Compare two Results (`untouched` models were not trained: nothing they depend on
    changed) and write the Markdown to `out`, with PNG figures beside it; write the text a
    pull-request comment can show (charts as Mermaid, no image links, within GitHub's
    limit) beside it, as <name>.comment.md, and, in a GitHub Actions job, to its summary. Return
    the Markdown."""
    import os

    from catsdogs.core.atomic import atomic_dir, write_text
    from catsdogs.data.manifest import LABELS
    from catsdogs.reports import figures
    from catsdogs.reports.report import (
        COMMENT_LIMIT,
        COMMENT_ROOM_LEFT,
        changed_models_charts,
        compare_models,
        confusion_matrices,
        param_changes,
        render,
    )

    params = param_changes(base_params, head_params)
    reports = compare_models(base, head, set(params["param"]), untouched, removed)
    drawn = []
    with atomic_dir(out.parent / "figures") as tmp:
        for model in (r.model for r in reports):
            histories = {"base": base.history.get(model), "head": head.history.get(model)}
            if all(history is None for history in histories.values()):
                continue  # not trained for this report, nor kept from another
            figures.curves_compared(histories, tmp / f"{model}_curves.png",
                                    f"{model}: accuracy per epoch")
            figures.confusion_compared(confusion_matrices(base, head, model), LABELS,
                                       tmp / f"{model}_confusion.png",
                                       f"{model}: test confusion matrices")
            drawn += [f"figures/{model}_curves.png", f"figures/{model}_confusion.png"]
    sections = {"title": title, "provenance": provenance, "params": params, "reports": reports,
                "leaderboard": head.leaderboard,
                "model_charts": changed_models_charts(reports, base, head, LABELS)}
    markdown = render(**sections, figures=drawn)
    comment = render(**sections, limit=COMMENT_LIMIT - COMMENT_ROOM_LEFT)
    write_text(out, markdown)
    write_text(out.with_suffix(".comment.md"), comment)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # the job's summary page shows what the comment does
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(comment + "\n")
    return markdown


def _stop_server(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """End `process` (mlflow ui) and all it started: SIGTERM, and where it is still there
    after `timeout_s` (a busy machine, a hung worker), SIGKILL to it and its descendants."""
    import subprocess

    import psutil

    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        process.kill()
        process.wait()


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address mlflow ui binds to.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True,
              help="Port of mlflow ui.")
@click.option("--no-browser", is_flag=True, help="Print the address; open no browser.")
@click.argument("mlflow_options", nargs=-1, type=click.UNPROCESSED)
def ui(host: str, port: int, no_browser: bool, mlflow_options: tuple[str, ...]) -> None:
    """Open the project's MLflow runs: `mlflow ui` on the project's store (MLFLOW_TRACKING_URI,
    else mlflow.db at the project root), showing the catsdogs experiment's runs in the
    model-training view with each run's validation and test accuracy as columns. Options after
    the known ones go to `mlflow ui` as they are. With a tracking server in
    MLFLOW_TRACKING_URI, only its address is printed and opened."""
    import signal
    import subprocess
    import time
    import urllib.request
    import webbrowser

    from catsdogs.tracking.client import client as tracking

    setup_logging()
    try:
        uri = tracking.connect()  # ends runs left RUNNING by dead processes, too
    except tracking.TrackingError as error:
        raise click.ClickException(str(error)) from error
    remote = uri.startswith(("http://", "https://"))
    server = uri if remote else f"http://{host}:{port}"
    experiment_id = tracking.experiment_id()
    tracking.publish_runs_view(experiment_id)
    address = tracking.experiment_address(server, experiment_id)
    if remote:
        click.echo(address)
        if not no_browser:
            webbrowser.open(address)
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
               "--port", str(port), *mlflow_options]
    # `kill` (SIGTERM) stops this command as Ctrl-C does, through `finally` below: else
    # mlflow ui and its workers would outlive it, still serving.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None:
            try:
                with urllib.request.urlopen(f"{server}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        if process.poll() is not None:
            raise click.ClickException(f"mlflow ui exited with status {process.returncode}; "
                                       "its output above says why (a port in use: --port)")
        click.echo(f"catsdogs runs: {address}  (Ctrl-C to stop)")
        if not no_browser:
            # No browser here (a server, CI): the address is printed above.
            with contextlib.suppress(webbrowser.Error):
                webbrowser.get().open(address)
        process.wait()
    finally:
        _stop_server(process)
        signal.signal(signal.SIGTERM, previous)


@main.command()
@click.option("--metrics-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default="metrics", show_default=True, help="The pipeline's metrics folder.")
def leaderboard(metrics_dir: Path) -> None:
    """Print each model's validation and test accuracy, with 95% intervals, as Markdown (the
    README's table), from the compare stage's metrics/leaderboard.csv."""
    import pandas as pd

    from catsdogs.evaluation.leaderboard import results_table

    board = metrics_dir / "leaderboard.csv"
    if not board.is_file():
        raise click.ClickException(f"'{board}' does not exist; run `dvc repro` (or `dvc pull`) first")
    click.echo(results_table(pd.read_csv(board)))


@main.command("zoo-stages")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path),
              default="params.yaml", show_default=True, help="The params file with the zoo.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write  [default: stages/zoo.yaml beside the params file].")
@click.option("--check", is_flag=True,
              help="Write nothing; fail when the file differs from what params.yaml makes.")
def zoo_stages(params_path: Path, out: Path | None, check: bool) -> None:
    """Write stages/zoo.yaml, dvc.yaml's list of train and evaluate stages, from the zoo in
    params.yaml: run it after adding, removing or renaming a model, or after giving one a
    setting of its own (image_size, batch_size, epochs, precision)."""
    from catsdogs.core.atomic import write_text
    from catsdogs.core.params import ConfigError, load_params
    from catsdogs.zoo.stages import ZOO_STAGES_FILE, render

    out = out or params_path.parent / ZOO_STAGES_FILE
    try:
        text = render(load_params(params_path))
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    current = out.read_text(encoding="utf-8") if out.is_file() else None
    if check:
        if current != text:
            raise click.ClickException(f"'{out}' does not match the zoo in '{params_path}'; run "
                                       "`catsdogs zoo-stages` and commit it")
        click.echo(f"{out} matches {params_path}")
        return
    if current == text:
        click.echo(f"{out} is up to date")
        return
    write_text(out, text)
    click.echo(f"wrote {out}: dvc.yaml's train@, finetune@ and evaluate@ stages follow it")


_OUT = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                    default="reports/pr/report.md", show_default=True,
                    help="Markdown file to write; figures go to a figures/ folder beside it, and "
                         "what a pull-request comment shows to <name>.comment.md.")
_REPO = click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path),
                     default=".", show_default=True, help="The catsdogs repository.")


@main.command()
@click.option("--base", required=True, help="Revision to compare against, e.g. origin/main.")
@click.option("--head", default="HEAD", show_default=True,
              help="Revision to report on: the checked-out commit unless given, as in pr-report.")
@click.option("--working-tree", is_flag=True,
              help="Report on the results in the working tree (e.g. a `dvc repro` not yet "
                   "committed) instead of a revision's.")
@_OUT
@_REPO
@click.pass_context
def report(ctx: click.Context, base: str, head: str, working_tree: bool, out: Path,
           repo: Path) -> None:
    """Compare the results committed at BASE with those at HEAD (or in the working tree), as
    they are: nothing is retrained. For a pull request, `catsdogs pr-report` makes them first."""
    setup_logging()
    import yaml

    from catsdogs.reports.results import read_results
    from catsdogs.reports.revisions import RevisionError, check_revision, reader

    if working_tree and ctx.get_parameter_source("head") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--head and --working-tree each name the results to report on; "
                               "give one")
    try:
        base_commit = check_revision(repo, base)
        head_commit = None if working_tree else check_revision(repo, head)
    except RevisionError as error:
        raise click.ClickException(str(error)) from error
    reads = {"base": reader(repo, base_commit), "head": reader(repo, head_commit)}
    params = {side: yaml.safe_load(read("params.yaml") or "") or {} for side, read in reads.items()}
    head_name = "working tree" if head_commit is None else f"{head} ({head_commit[:12]})"
    markdown = _write_report(
        title=f"catsdogs: {head_name} vs {base} ({base_commit[:12]})",
        provenance=["Numbers: the results committed at each revision, as they are (nothing "
                    "retrained)." if head_commit else "Numbers: the results committed at the "
                    "base and those in the working tree, as they are (nothing retrained)."],
        base=read_results(reads["base"], []), head=read_results(reads["head"], []),
        base_params=params["base"], head_params=params["head"], out=out,
    )
    click.echo(markdown)


@main.command("pr-report")
@click.option("--base", required=True, help="The pull request's base, e.g. origin/main.")
@click.option("--head", default="HEAD", show_default=True,
              help="The pull request's head: the checked-out commit unless given, as in "
                   "report (--profile committed takes only that one). Never the working tree: "
                   "pr-report compares commits, and keeps results by commit.")
@click.option("--profile", default="auto", show_default=True,
              help="How the numbers are made: `committed` (params.yaml as committed: pull from "
                   "the DVC remote, retrain what is stale), a profile of profiles.yaml run at "
                   "both revisions (e.g. `fast`), or `auto`: committed with a DVC remote, else "
                   "fast.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where results made in a clone are kept, by commit, profile and machine "
                   "(the base's are reused by the next push on the same kind of machine)  "
                   "[default: .catsdogs/results in --repo].")
@click.option("--every-model", is_flag=True,
              help="Under a profile, train every model at both revisions, not only those the "
                   "change touches (e.g. to make a commit's results ahead of its pull requests).")
@_OUT
@_REPO
def pr_report(base: str, head: str, profile: str, results_dir: Path | None, every_model: bool,
              out: Path, repo: Path) -> None:
    """Report what a pull request did to every model's accuracy, like for like.

    Makes the numbers first: as committed, or under a profile at both the base and the head;
    a model whose two sides were made on two machines is retrained here on each side made
    elsewhere. Writes the Markdown to --out and, in GitHub Actions, to the job summary.
    """
    setup_logging()
    import yaml

    from catsdogs.core import machine
    from catsdogs.reports import pull_request as pr
    from catsdogs.reports.profiles import PROFILES_FILE, load_profiles
    from catsdogs.reports.report import made_where, numbers_committed, numbers_profile, stale_results
    from catsdogs.reports.revisions import check_revision, has_remote, reader, stale_at

    repo = repo.resolve()
    results_dir = (results_dir or repo / ".catsdogs/results").resolve()
    here = machine.describe()
    try:
        commits = {"base": check_revision(repo, base), "head": check_revision(repo, head)}
        if profile == "auto":
            profile = "committed" if has_remote(repo) else "fast"
        if profile == "committed":
            if check_revision(repo, "HEAD") != commits["head"]:
                raise click.UsageError(f"--profile committed reports on the checked-out commit; "
                                       f"check out {head} first")
            outcome = pr.report_as_committed(repo, commits["base"], results_dir,
                                             here["fingerprint"])
            numbers = numbers_committed(outcome.base.retrained, outcome.head.ran)
        else:
            overrides = load_profiles(repo / PROFILES_FILE).get(profile)
            if overrides is None:
                raise click.BadParameter(
                    f"no profile '{profile}' in {PROFILES_FILE}; choose committed, auto or one "
                    f"of: {', '.join(load_profiles(repo / PROFILES_FILE))}", param_hint="--profile")
            outcome = pr.report_under_profile(repo, commits, profile, overrides, results_dir,
                                              here["fingerprint"], every_model=every_model)
            numbers = numbers_profile(profile, overrides, str(results_dir), {
                side: (made.reused, made.ran)
                for side, made in (("base", outcome.base), ("head", outcome.head))})
        results = {"base": outcome.base.results(), "head": outcome.head.results()}
        provenance = [*stale_results(stale_at(repo, commits["head"])), outcome.plan, "", numbers,
                      "", *made_where(results["base"], results["head"], here, outcome.replaced,
                                      {"base": outcome.base.ran, "head": outcome.head.ran})]
        params = {side: yaml.safe_load(reader(repo, commit)("params.yaml") or "") or {}
                  for side, commit in commits.items()}
        markdown = _write_report(
            title=f"catsdogs: {head} ({commits['head'][:12]}) vs {base} ({commits['base'][:12]})",
            provenance=provenance, base=results["base"], head=results["head"],
            base_params=params["base"], head_params=params["head"], out=out,
            untouched=outcome.untouched, removed=outcome.removed,
        )
    except UserError as error:
        raise click.ClickException(str(error)) from error
    click.echo(markdown)


if __name__ == "__main__":
    main()
