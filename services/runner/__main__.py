"""`python -m stamen.runner`: the `stamen-serverapp` command (how the SuperLink starts it)."""

from .cli import main

main()
