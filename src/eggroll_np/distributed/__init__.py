"""Distributed populations on Ray (extra `ray`): the driver's evaluator (evaluator) and one worker
replica with its checksum (replica); only fitness scalars travel."""

from __future__ import annotations

from .evaluator import (
    GenerationReport,
    RayEvaluator,
    ReplicaMismatchError,
    checksum,
    payload_nbytes,
    split_members,
)

__all__ = [
    "RayEvaluator",
    "GenerationReport",
    "ReplicaMismatchError",
    "checksum",
    "split_members",
    "payload_nbytes",
]
