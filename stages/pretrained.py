"""DVC stage `pretrained@<arch>`: fetch the weights an architecture of the zoo starts from.

Reads `pretrained.<arch>` of params.yaml. Writes --out: the weights file, checked against
its sha256, or a note that the architecture starts from random weights (without --arch,
--out/<arch>/ for every architecture). Each train stage depends on its own architecture's
folder only, so DVC hashes the weights that made its numbers, and a model that starts from
random weights never needs another's download. Logs what was fetched to MLflow as run
`pretrained`.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs.cli.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.core.params import load_params
from catsdogs.data.pretrained import fetch_architecture, fetch_pretrained, read_pretrained
from catsdogs.tracking import runs, store


@click.command()
@params_option
@click.option("--arch", default=None,
              help="The architecture (a key of the pretrained section) to fetch; every one "
                   "(into --out/<arch>/) when not given.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default="data/pretrained", show_default=True,
              help="Folder to write (replaced): the architecture's, or one subfolder per "
                   "architecture without --arch.")
@fails_clearly
def main(params_path: str, arch: str | None, out: Path) -> None:
    """Fetch an architecture's pretrained weights (pretrained.<arch>.url: a URL, file://
    URL or local path, or a list of mirrors), verify pretrained.<arch>.sha256, and write
    them to --out; an architecture set to `none` gets a note instead."""
    setup_logging()
    sources = read_pretrained(load_params(params_path))
    if arch is not None and arch not in sources:
        raise click.BadParameter(f"'{arch}' is not in the pretrained section; choose from: "
                                 f"{', '.join(sources)}", param_hint="--arch")
    store.connect()
    if arch is None:
        fetched = fetch_pretrained(sources, out)
    else:
        sources = {arch: sources[arch]}
        fetched = {arch: fetch_architecture(arch, sources[arch], out)}
    with runs.run("pretrained", tags=runs.context_tags("pretrained")):
        runs.log_params({"pretrained": {arch: record or "none"
                                        for arch, record in fetched.items()}})
    for arch, record in fetched.items():
        if record and sources[arch].sha256 is None:
            click.echo(f"Fetched {record['source']}: {record['size_bytes']:,} bytes, sha256 "
                       f"{record['sha256']}; set pretrained.{arch}.sha256 to this value to "
                       "pin it.", err=True)


if __name__ == "__main__":
    main()
