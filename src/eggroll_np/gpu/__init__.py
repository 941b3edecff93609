"""GPU checks that need a CUDA device (tools, not engine): the first-GPU-hour run (check) and the
device probes it reports (probes)."""

from __future__ import annotations

__all__: list[str] = []
