"""`python -m cleave` is the `cleave` command."""

from cleave.cli import main

main()
