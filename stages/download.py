"""DVC stage `download`: fetch the data set archive and extract it.

Reads the `download` section of params.yaml. Writes the extracted tree to --out and what was
fetched (source, sha256, size) to --record, and logs the same to MLflow as run `download`.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs import tracking
from catsdogs.atomic import write_json
from catsdogs.config import load_params, read_section
from catsdogs.data.download import DownloadConfig, download
from catsdogs.stage_support import fails_clearly, params_option, setup_logging


@click.command()
@params_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="data/raw",
              show_default=True, help="Folder to extract the data set into (replaced).")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/download.json", show_default=True,
              help="JSON file recording the source, sha256 and size fetched.")
@fails_clearly
def main(params_path: str, out: Path, record: Path) -> None:
    """Fetch the cats_and_dogs_filtered zip from download.url (a URL, file:// URL or local
    path, or a list tried in order), verify download.sha256 if set, and extract it."""
    setup_logging()
    config = read_section(load_params(params_path), "download", DownloadConfig)
    tracking.connect()
    fetched = download(
        config.sources, out, sha256=config.sha256, timeout_s=config.timeout_s,
        retries=config.retries, backoff_s=config.backoff_s, max_files=config.max_files,
        max_bytes=config.max_bytes,
    )
    facts = {"source": fetched.source, "sha256": fetched.sha256, "size_bytes": fetched.size}
    write_json(record, facts)
    with tracking.run("download", tags=tracking.context_tags("download")):
        tracking.log_params({"download": {"source": fetched.source, "sha256": fetched.sha256}})
        tracking.log_metrics({"size_bytes": fetched.size})
    if config.sha256 is None:
        click.echo(f"Fetched {fetched.size:,} bytes, sha256 {fetched.sha256}; "
                   "set download.sha256 to this value to pin it.", err=True)


if __name__ == "__main__":
    main()
