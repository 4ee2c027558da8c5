"""``python -m planner`` is the same as the ``vlmplan`` command."""

from planner.cli import main

main()
