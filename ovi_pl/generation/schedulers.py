"""Flow-matching solvers for sampling: diffusers' UniPC and Euler on our noise-level schedule.

Both step from noise level s = 1 to s = 0 through `shift_noise_level(linspace(1, 0, N + 1), shift)`
(s' = shift*s / (1 + (shift - 1)*s), the map training's `shifted` timesteps use) and treat the
network output as the flow velocity v = eps - x0. diffusers applies the shift itself to the
unshifted grid we hand it, so the schedule here and the solver's agree by construction.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from torch import Tensor

from ovi_pl.training.flow_matching import shift_noise_level

Solver = Literal["unipc", "euler"]
SOLVERS: tuple[str, ...] = ("unipc", "euler")


def noise_schedule(steps: int, shift: float) -> Tensor:
    """Noise levels s_0 = 1 > s_1 > ... > s_steps = 0, float64 [steps + 1]."""
    if steps < 1:
        raise ValueError(f"sampling needs at least 1 step, got {steps}")
    return shift_noise_level(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


class FlowSolver:
    """One modality's solver state for one sampling run (multistep solvers keep a history).

    `levels[i]` is the noise level the model sees at step i; `step(v, x, i)` returns x at level i+1.
    """

    def __init__(self, solver: Solver, steps: int, shift: float) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
        unshifted = np.linspace(1.0, 0.0, steps + 1)[:-1]
        if solver == "unipc":
            # bh2 predictor-corrector of order 2, as Wan/Ovi sample; x0-space updates suit flow models.
            self.scheduler = UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, solver_order=2
            )
        else:
            self.scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        self.scheduler.set_timesteps(sigmas=unshifted)
        self.levels = noise_schedule(steps, shift).float()
        # diffusers nudges s_0 = 1 down by 1e-6 to keep UniPC's log(alpha) finite; nothing else may differ.
        torch.testing.assert_close(self.scheduler.sigmas.float(), self.levels, atol=2e-6, rtol=0)

    def step(self, velocity: Tensor, sample: Tensor, index: int) -> Tensor:
        timestep = self.scheduler.timesteps[index]
        out = self.scheduler.step(velocity.float(), timestep, sample.float(), return_dict=False)[0]
        return out.to(sample.dtype)
