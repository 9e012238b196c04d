"""DVC stage `download`: fetch the photo collection(s) and unpack them.

Reads the `download` section of params.yaml. Writes the unpacked tree to --out (a single
source at its top, named sources each in a folder of its name) and what was fetched (per
source: name, folder, source, kind, sha256, size) to --record, which the split stage reads
to find the sources; logs the same to MLflow as run `download`.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs.cli.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.core.atomic import write_json
from catsdogs.core.params import load_params, read_section
from catsdogs.data.download import download_all
from catsdogs.data.sources import DownloadConfig, shown
from catsdogs.tracking import runs, store


@click.command()
@params_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="data/raw",
              show_default=True, help="Folder to extract the data set into (replaced).")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/download.json", show_default=True,
              help="JSON file recording each source fetched: name, folder, kind, sha256, size.")
@fails_clearly
def main(params_path: str, out: Path, record: Path) -> None:
    """Fetch the photos from download.url (a URL, file:// URL or local path of a zip, tar or
    folder; a list of mirrors tried in order; or {name: source} for several collections),
    verify download.sha256 if set, and unpack them."""
    setup_logging()
    config = read_section(load_params(params_path), "download", DownloadConfig)
    sources = config.sources
    store.connect()
    fetched = download_all(
        sources, out, timeout_s=config.timeout_s, retries=config.retries,
        backoff_s=config.backoff_s, max_files=config.max_files, max_bytes=config.max_bytes,
    )
    write_json(record, {"sources": [f.record() for f in fetched]})
    logged = {f.name or "": {"source": shown(f.source), "kind": f.kind, "sha256": f.sha256}
              for f in fetched}
    with runs.run("download", tags=runs.context_tags("download")):
        runs.log_params({"download": logged.get("") or logged})
        runs.log_metrics({"size_bytes": sum(f.size for f in fetched)})
    for source, got in zip(sources, fetched, strict=True):
        if source.sha256 is None:
            setting = f"download.sha256.{got.name}" if got.name else "download.sha256"
            click.echo(f"Fetched {shown(got.source)}: {got.size:,} bytes, sha256 {got.sha256}; "
                       f"set {setting} to this value to pin it.", err=True)


if __name__ == "__main__":
    main()
