"""Throw-away clusters on this machine for the real-cluster tests: a one-node Slurm cluster
(`slurm.py`) and a Ray head on the loopback address (`ray_head.py`). Each also runs by hand,
e.g. `python -m tests.cluster.slurm`, to try a launcher preset against it."""
