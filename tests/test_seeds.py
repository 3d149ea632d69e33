"""The run's random streams: one per (seed, task, purpose), none shared, for any allowed task count."""

from __future__ import annotations

import pytest

from cl_runner import seeds
from cl_runner.errors import ConfigError

from .conftest import config_error


def test_every_stream_of_two_seeds_has_its_own_generator_seed():
    drawn = {}
    for seed in (0, 1, seeds.MAX_SEED):
        for task in range(seeds.MAX_TASKS + 1):
            for purpose in seeds.Stream:
                key = seeds.generator(seed, task, purpose).initial_seed()
                assert key not in drawn, f"{(seed, task, purpose)} collides with {drawn[key]}"
                drawn[key] = (seed, task, purpose)


def test_streams_are_reproducible_and_bounded():
    a, b = seeds.generator(3, 2, seeds.Stream.SHUFFLE), seeds.generator(3, 2, seeds.Stream.SHUFFLE)
    assert a.initial_seed() == b.initial_seed()
    with pytest.raises(ValueError):
        seeds.generator(0, seeds.MAX_TASKS + 1, seeds.Stream.SHUFFLE)
    error = config_error(["dataset=permuted_mnist", f"dataset.num_tasks={seeds.MAX_TASKS + 1}"])
    assert isinstance(error, ConfigError) and error.key == "dataset.num_tasks"
    error = config_error([f"seed={seeds.MAX_SEED + 1}"])
    assert isinstance(error, ConfigError) and error.key == "seed"
