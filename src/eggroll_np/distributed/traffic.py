"""What a distributed generation sends and receives: `GenerationReport` and the byte counts."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

__all__ = ["GenerationReport", "payload_nbytes", "stored_nbytes"]


@dataclass(frozen=True)
class GenerationReport:
    """What one distributed generation cost and survived.

    Attributes:
        generation, seconds: the generation told, and its wall time on the driver.
        bytes_sent: driver -> workers: the fitness vector's object-store size plus the task
            arguments' pickled sizes (an object reference counts as its id).
        bytes_received: workers -> driver: fitness slices and checksums (pickled sizes).
        broadcast_bytes: (params, state) snapshots loaded by restarted or resynced actors (0 in
            a healthy generation; in neither field above).
        reassigned, restarts: members re-evaluated after an actor died, actors replaced.
    """

    generation: int
    seconds: float
    bytes_sent: int
    bytes_received: int
    broadcast_bytes: int = 0
    reassigned: int = 0
    restarts: int = 0


def payload_nbytes(obj: Any) -> int:
    """Serialized size of a Python object as pickle protocol 5 writes it (arrays in-band)."""
    return len(pickle.dumps(obj, protocol=5))


def stored_nbytes(ray: Any, ref: Any, obj: Any) -> int:
    """Size of a `ray.put` object as Ray's object store holds it (pickled size if unknown)."""
    try:
        size = ray.experimental.get_object_locations([ref])[ref]["object_size"]
    except Exception:  # noqa: BLE001 - a best-effort lookup; the pickled size is close
        size = None
    return int(size) if size else payload_nbytes(obj)
