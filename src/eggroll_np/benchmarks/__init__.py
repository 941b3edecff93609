"""Benchmarks (tools, not engine): `eggroll-np bench` (bench), its GPU figures (gpu_bench, timed by
gpu_timing), the paper-style tables (tables) and the reference workloads they time (reference)."""

from __future__ import annotations

__all__: list[str] = []
