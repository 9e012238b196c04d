"""DVC stage `pretrained`: fetch the weights each architecture of the zoo starts from.

Reads the `pretrained` section of params.yaml. Writes --out/<arch>/ for every architecture:
the weights file, checked against its sha256, or a note that the architecture starts from
random weights. Each train stage depends on its architecture's folder, so DVC hashes the
weights that made its numbers. Logs what was fetched to MLflow as run `pretrained`.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs import tracking
from catsdogs.config import load_params
from catsdogs.data.pretrained import fetch_pretrained, read_pretrained
from catsdogs.stage_support import fails_clearly, params_option, setup_logging


@click.command()
@params_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default="data/pretrained", show_default=True,
              help="Folder to write, one subfolder per architecture (replaced).")
@fails_clearly
def main(params_path: str, out: Path) -> None:
    """Fetch each architecture's pretrained weights (pretrained.<arch>.url: a URL, file://
    URL or local path, or a list of mirrors), verify pretrained.<arch>.sha256, and write
    them under --out; an architecture set to `none` gets a note instead."""
    setup_logging()
    sources = read_pretrained(load_params(params_path))
    tracking.connect()
    fetched = fetch_pretrained(sources, out)
    with tracking.run("pretrained", tags=tracking.context_tags("pretrained")):
        tracking.log_params({"pretrained": {arch: record or "none"
                                            for arch, record in fetched.items()}})
    for arch, record in fetched.items():
        if record and sources[arch].sha256 is None:
            click.echo(f"Fetched {record['source']}: {record['size_bytes']:,} bytes, sha256 "
                       f"{record['sha256']}; set pretrained.{arch}.sha256 to this value to "
                       "pin it.", err=True)


if __name__ == "__main__":
    main()
