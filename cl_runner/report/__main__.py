"""`python -m cl_runner.report PATH ...`, the same as the `cl-report` command."""

from .cli import main

main()
