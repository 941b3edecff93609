"""Distributed populations on Ray (extra `ray`): the driver's evaluator (evaluator), one worker
replica with its checksum (replica), what a generation sends (traffic); only fitness travels."""

from __future__ import annotations

from .evaluator import RayEvaluator, ReplicaMismatchError
from .replica import checksum, split_members
from .traffic import GenerationReport, payload_nbytes

__all__ = [
    "RayEvaluator",
    "GenerationReport",
    "ReplicaMismatchError",
    "checksum",
    "split_members",
    "payload_nbytes",
]
