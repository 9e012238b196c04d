"""`catsdogs report`: compare the results committed at two revisions (or at one and in the
working tree), as they are, and write the Markdown report with its figures.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs.cli.report_files import OUT, REPO, write_report
from catsdogs.cli.stage_support import setup_logging


@click.command()
@click.option("--base", required=True, help="Revision to compare against, e.g. origin/main.")
@click.option("--head", default="HEAD", show_default=True,
              help="Revision to report on: the checked-out commit unless given, as in pr-report.")
@click.option("--working-tree", is_flag=True,
              help="Report on the results in the working tree (e.g. a `dvc repro` not yet "
                   "committed) instead of a revision's.")
@OUT
@REPO
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
    markdown = write_report(
        title=f"catsdogs: {head_name} vs {base} ({base_commit[:12]})",
        provenance=["Numbers: the results committed at each revision, as they are (nothing "
                    "retrained)." if head_commit else "Numbers: the results committed at the "
                    "base and those in the working tree, as they are (nothing retrained)."],
        base=read_results(reads["base"], []), head=read_results(reads["head"], []),
        base_params=params["base"], head_params=params["head"], out=out,
    )
    click.echo(markdown)
