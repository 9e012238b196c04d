"""DVC stage `split`: check every image and write the train/validation/test manifest.

Reads the `split` section of params.yaml (and `train.image_size`, the size of the sample
figure), the unpacked tree at --images and, from the download stage's record at --sources,
where each source lies in it. Writes manifest.csv, excluded.csv and duplicates.csv to --out,
the data facts (counts, baseline, each source's layout, exclusions, duplicates) to --metrics,
the 3-cats-over-3-dogs sample figure to --figure, and logs them to MLflow as run `split`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from catsdogs.cli.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.core.atomic import atomic_dir, write_csv, write_json
from catsdogs.core.params import load_params, read_section
from catsdogs.data.images import read_images
from catsdogs.data.manifest import LABELS
from catsdogs.data.split import DataError, SplitConfig, build_manifest, data_metrics
from catsdogs.reports import figures
from catsdogs.tracking import runs, store
from catsdogs.zoo.settings import TrainConfig

SAMPLES_PER_CLASS = 3


@click.command()
@params_option
@click.option("--images", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default="data/raw", show_default=True, help="The extracted data set.")
@click.option("--sources", "sources_record", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/download.json", show_default=True,
              help="The download stage's record of the sources and their folders; without "
                   "it, --images is one source.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="data/split",
              show_default=True, help="Folder for manifest.csv, excluded.csv, duplicates.csv.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/data.json", show_default=True, help="Data metrics JSON.")
@click.option("--figure", type=click.Path(dir_okay=False, path_type=Path),
              default="plots/data/samples.png", show_default=True,
              help="Sample figure: 3 training cats over 3 training dogs.")
@fails_clearly
def main(params_path: str, images: Path, sources_record: Path, out: Path, metrics_path: Path,
         figure: Path) -> None:
    """Split the photos. The tutorial's layout keeps its split (train/; every
    split.test_every-th validation file per class is test); other sources are split by a hash
    of each photo. Near-identical photos share a split; unusable or unlabelled files and
    near-identical photos with different labels are excluded and listed."""
    setup_logging()
    params = load_params(params_path)
    config = read_section(params, "split", SplitConfig)
    image_size = read_section(params, "train", TrainConfig).image_size
    sources = (".",)
    if sources_record.is_file():
        record = json.loads(sources_record.read_text())
        if "sources" not in record:
            raise DataError(f"'{sources_record}' was written by an older download stage and "
                            "does not list the sources; run `dvc repro download` again")
        sources = tuple(s["folder"] for s in record["sources"])
    store.connect()
    result = build_manifest(images, **dataclasses.asdict(config), sources=sources)
    metrics = data_metrics(result)
    with atomic_dir(out) as tmp:
        write_csv(tmp / "manifest.csv", result.manifest)
        write_csv(tmp / "excluded.csv", result.excluded)
        write_csv(tmp / "duplicates.csv", result.duplicates)
    write_json(metrics_path, metrics)

    train = result.manifest[result.manifest["split"] == "train"]
    picks = [train[train["label"] == label].head(SAMPLES_PER_CLASS) for label in LABELS]
    paths = [images / p for pick in picks for p in pick["path"]]
    titles = [label for pick in picks for label in pick["label"]]
    figures.image_grid(list(read_images(paths, image_size, max_pixels=None)), titles, figure,
                       columns=SAMPLES_PER_CLASS, suptitle="Training samples")

    with runs.run("split", tags=runs.context_tags("split")):
        runs.log_params({"split": dataclasses.asdict(config)})
        runs.log_metrics(metrics)
        runs.log_artifact(figure, "figures")
        runs.log_artifact(out / "excluded.csv", "data")
        runs.log_artifact(metrics_path, "data")
    counts = {s: v["total"] for s, v in metrics["splits"].items()}
    layouts = ", ".join(f"{folder}: {facts['layout']}" for folder, facts in metrics["sources"].items())
    click.echo(f"Split {counts} ({layouts}); excluded {metrics['excluded']} "
               f"{metrics['excluded_by_kind']}; {metrics['duplicates']['groups']} groups of "
               f"identical or near-identical photos, {metrics['cross_split_duplicates']} across "
               "splits.", err=True)


if __name__ == "__main__":
    main()
