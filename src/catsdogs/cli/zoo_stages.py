"""`catsdogs zoo-stages`: write stages/zoo.yaml, dvc.yaml's list of train, finetune and
evaluate stages, from the zoo in params.yaml; with --check, write nothing and fail when the
file is not what params.yaml makes.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("zoo-stages")
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
