"""Training (tools, not engine): the loop of `eggroll-np train` (train), its progress line
(progress) and the real workloads it trains (workloads)."""

from __future__ import annotations

__all__: list[str] = []
