"""What people read: figures, and the reports that compare two revisions' results
(`catsdogs report`, `catsdogs pr-report`), with the git and DVC calls they need.

`figures` draws the pipeline's PNGs; `revisions` runs git and DVC (files at a revision,
clones, `dvc` commands); `results` reads one revision's numbers and how they were made;
`profiles` is profiles.yaml's short recipes; `stage_changes` says which stages, and so which
models, a change touches before anything trains; `retraining` makes one side's results on this
machine, in the working tree or in a kept clone; `pull_request` makes both sides like for
like, as committed or under a profile; `comparison` compares the two sides' params and each
model's numbers, pairwise; `provenance` says in sentences how the numbers were made;
`report` renders the Markdown, with `charts`' Mermaid curves and confusion matrices.
"""
