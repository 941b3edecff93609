"""Models the tools and examples share, written on the engine's Population (mlp, simple_cnn)."""

from __future__ import annotations

__all__: list[str] = []
