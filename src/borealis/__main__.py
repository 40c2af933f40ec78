"""`python -m borealis` runs the `borealis` command."""

from borealis.cli import main

main()
