"""The `catsdogs` command: `main` gathers the subcommands, one module each named for its
command (`predict`, `evaluate`, `ui`, `leaderboard`, `zoo_stages`, `report`, `pr_report`;
`model_source` is where predict and evaluate get their model, `report_files` what report and
pr-report write); and what the stage scripts in `stages/` share (`stage_support`).
"""
