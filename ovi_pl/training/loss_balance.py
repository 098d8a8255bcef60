"""How the fusion stage adds its video and audio losses into one.

fixed: loss = w_video * loss_video + w_audio * loss_audio (the paper: 0.85 / 0.15).
running: each modality's loss is first divided by a running magnitude, an exponential moving
average of its detached value, so the weights set each modality's share of the total whatever
the raw scales (a peer's raw video and audio losses differ about 10x); the average is not
differentiated, so the gradient direction of each modality is unchanged, only its scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

LossBalance = Literal["fixed", "running"]


@dataclass
class LossBalancer:
    weights: dict[str, float]
    mode: LossBalance = "fixed"
    decay: float = 0.99
    # Running magnitude per modality; set from the first loss seen, so there is no start-up bias.
    magnitudes: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("fixed", "running"):
            raise ValueError(f"model.loss_balance={self.mode!r}: use fixed or running")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"model.loss_balance_decay={self.decay} must be in [0, 1), e.g. 0.99")

    def update(self, detached: dict[str, float]) -> None:
        """Fold one step's (rank-averaged) per-modality losses into the running magnitudes."""
        for name, value in detached.items():
            previous = self.magnitudes.get(name)
            self.magnitudes[name] = value if previous is None else self.decay * previous + (1 - self.decay) * value

    def weighted(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's term of the total, by the same names as `losses`."""
        terms = {}
        for name, loss in losses.items():
            term = self.weights[name] * loss
            if self.mode == "running":
                term = term / max(self.magnitudes.get(name, 1.0), 1e-12)
            terms[name] = term
        return terms

    def state_dict(self) -> dict[str, float]:
        return dict(self.magnitudes)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.magnitudes = dict(state)
