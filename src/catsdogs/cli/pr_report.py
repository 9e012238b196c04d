"""`catsdogs pr-report`: report what a pull request did to every model's accuracy, like for
like: make the numbers at its base and head first (as committed, or under a profile of
profiles.yaml), then write the report as `catsdogs report` does.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs.cli.report_files import OUT, REPO, write_report
from catsdogs.cli.stage_support import setup_logging
from catsdogs.core.errors import UserError


@click.command("pr-report")
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
@OUT
@REPO
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
    from catsdogs.reports.provenance import made_where, numbers_committed, numbers_profile, stale_results
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
        markdown = write_report(
            title=f"catsdogs: {head} ({commits['head'][:12]}) vs {base} ({commits['base'][:12]})",
            provenance=provenance, base=results["base"], head=results["head"],
            base_params=params["base"], head_params=params["head"], out=out,
            untouched=outcome.untouched, removed=outcome.removed,
        )
    except UserError as error:
        raise click.ClickException(str(error)) from error
    click.echo(markdown)
