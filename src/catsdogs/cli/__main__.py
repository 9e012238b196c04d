"""`python -m catsdogs.cli`: the `catsdogs` command."""

from catsdogs.cli.main import main

main()
