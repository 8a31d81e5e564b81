"""Process rank: the one job is to say which process of a distributed job (``torchrun``,
``accelerate launch``) writes outputs, the one rule fine-tunes, heals and sweeps share."""

from __future__ import annotations

import torch
from accelerate import PartialState


def no_gpu() -> bool:
    """Whether this machine has no GPU: then processes train on the CPU and form one gloo group."""
    return not torch.cuda.is_available()


def is_main_process() -> bool:
    """Whether this process writes outputs: the main process of a ``torchrun`` / ``accelerate launch``
    job, or the only one (``accelerate.PartialState``; on a machine without a GPU it is the CPU state,
    so that CPU processes form one gloo group)."""
    return PartialState(cpu=no_gpu()).is_main_process
