"""cl-runner: configuration-driven continual-learning experiments in PyTorch.

The entry points are the console scripts `cl-run` (see `cl_runner.cli`) and
`cl-report` (see `cl_runner.report`); `cl_runner.run.run(cfg, output_dir)` runs one
experiment from a composed config and returns its summary.
"""

__version__ = "0.1.0"
