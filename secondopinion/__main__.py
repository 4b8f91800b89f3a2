"""``python -m secondopinion``: the command line."""

from .cli import main

main()
