"""Learning-rate schedules: `Schedule`, one frozen value (kind, final lr, decay steps) in ESConfig.

The lr of update `count` (1, 2, ...) is a pure function of the schedule, the base lr and the count,
in the spirit of optax's schedules, so a run resumed from a checkpoint (which stores the count)
takes exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import _checks

__all__ = ["SCHEDULES", "Schedule"]

SCHEDULES = ("constant", "linear", "cosine")
"""Valid schedule kinds. "constant" keeps lr; "linear" and "cosine" (half a period) decay from lr
to `final` over `steps` updates, then stay at `final`."""


@dataclass(frozen=True)
class Schedule:
    """How the learning rate moves over the updates of a run (validated on construction).

    Attributes:
        kind: "constant", "linear" or "cosine".
        final: the lr reached after `steps` updates (>= 0; None with "constant", 0.0 when a
            decaying kind is given none).
        steps: updates to decay over (>= 1; None with "constant").

    Example:
        >>> from eggroll_np.schedule import Schedule
        >>> s = Schedule("linear", final=0.0, steps=4)
        >>> [s.lr(0.1, c) for c in (1, 3, 5, 9)]
        [0.1, 0.05, 0.0, 0.0]
    """

    kind: str = "constant"
    final: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        kind = _checks.choice("lr_schedule", self.kind, SCHEDULES)
        if kind == "constant":
            for name, value in (("lr_final", self.final), ("lr_decay_steps", self.steps)):
                if value is not None:
                    raise ValueError(
                        f"{name} is only used by lr_schedule 'linear' or 'cosine', got "
                        f"lr_schedule='constant' with {name}={value!r}"
                    )
            return
        if self.steps is None:
            raise ValueError(f"lr_schedule={kind!r} needs lr_decay_steps (steps to decay over)")
        final = _checks.real("lr_final", 0.0 if self.final is None else self.final, 0.0)
        object.__setattr__(self, "final", final)
        object.__setattr__(self, "steps", _checks.integer("lr_decay_steps", self.steps, 1))

    def lr(self, lr: float, count: int) -> float:
        """The learning rate of update `count` (1 for the first) from the base `lr`.

        With t = min(count - 1, steps) / steps: "linear" gives lr + (final - lr) * t, "cosine"
        final + (lr - final) * (1 + cos(pi t)) / 2; both start at lr and hold `final` from
        update steps + 1 on.
        """
        lr = float(lr)
        if self.kind == "constant":
            return lr
        steps = int(self.steps)  # type: ignore[arg-type]
        t = min(max(int(count) - 1, 0), steps) / steps
        final = float(self.final)  # type: ignore[arg-type]
        if self.kind == "linear":
            return lr + (final - lr) * t
        return final + (lr - final) * 0.5 * (1.0 + math.cos(math.pi * t))

    def to_dict(self) -> dict[str, Any]:
        """{"kind", "final", "steps"}: the JSON form checkpoints store."""
        return {"kind": self.kind, "final": self.final, "steps": self.steps}
