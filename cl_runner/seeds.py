"""The run's random streams: one generator per (seed, task, purpose), and the table of purposes.

Every random choice of a run (batch order, replay memory, Fisher samples, ...) draws from its
own generator, seeded from the run's seed, the task it is made for, and its purpose. A stream
therefore does not depend on how many numbers other code drew before it, which is what makes
resume exact and lets strategies combine without changing each other's draws.

Purposes are listed once, here, so that no two parts share a stream. The seed of a stream is
seed * 1_000_003 + task * 1_009 + purpose: distinct for every (seed, task, purpose) as long
as purpose < 1_009 and task < 991 (`MAX_TASKS`, which config validation enforces).
"""

from __future__ import annotations

from enum import IntEnum, unique

import torch

MAX_TASKS = 990
MAX_SEED = 2**32 - 1


@unique
class Stream(IntEnum):
    SHUFFLE = 0  # the order of each epoch's batches
    REPLAY_CHOICE = 1  # which examples replay keeps
    EWC_SAMPLES = 2  # which examples estimate the Fisher
    EWC_LABELS = 3  # labels drawn under ewc.fisher=sampled
    JOINT_SUBSET = 7  # joint.task_shares: which part of each task's data (task = the data's task)
    AGEM_SAMPLE = 11  # A-GEM's memory batches
    AGEM_STORE = 12  # what A-GEM's memory keeps
    DER_SAMPLE = 13  # DER's memory batches
    DER_STORE = 14  # DER's reservoir draws
    ICARL_RANDOM = 15  # icarl.selection=random
    GDUMB_STORE = 16  # what GDumb's memory keeps
    GDUMB_INIT = 17  # GDumb's re-initialisation
    REPLAY_BATCH = 18  # replay.mix=batch's memory batches
    MAS_SAMPLES = 19  # which examples estimate MAS's importance (mas.samples)


def generator(seed: int, task: int, purpose: Stream, device: torch.device | str = "cpu") -> torch.Generator:
    if not 0 <= task <= MAX_TASKS:
        raise ValueError(f"task index {task} outside 0..{MAX_TASKS}: streams would collide")
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + task * 1_009 + int(purpose))
