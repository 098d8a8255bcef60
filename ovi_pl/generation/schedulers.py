"""Flow-matching solvers for sampling: diffusers' UniPC and Euler, set up as the Ovi reference sets them up.

The reference (character-ai/Ovi, `OviFusionEngine.get_scheduler_time_steps`) samples with
- UniPC: Wan's copy of diffusers' UniPC for flow matching, whose unshifted noise levels run from
  0.999 (float32) down to 0 and whose model timesteps are those levels x 1000 truncated to integers
  (999, 995, 991, ... at 50 steps, shift 5); the solver itself steps on the unrounded levels.
- Euler: diffusers' `FlowMatchEulerDiscreteScheduler(shift=shift)` with `set_timesteps(steps)`,
  which shifts its grid twice (once at construction, once per call), so the last level before 0
  is not small (0.024 at 2 steps, shift 5); timesteps stay fractional (1000, 995.87, ...).
diffusers' own `UniPCMultistepScheduler` given the reference's unshifted levels reproduces the first
bit for bit (checked against the reference's scheduler by tests/test_reference_parity.py).
Both treat the network output as the flow velocity v = eps - x0 at noise level s = t / 1000.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from torch import Tensor

Solver = Literal["unipc", "euler"]
SOLVERS: tuple[str, ...] = ("unipc", "euler")

# The reference's UniPC takes its top level from a 1000-step training grid, held in float32.
UNIPC_TOP_LEVEL = float(np.float32(1.0 - 1.0 / 1000))


class FlowSolver:
    """One modality's solver state for one sampling run (multistep solvers keep a history).

    `model_times[i]` is the timestep the model sees at step i (float32, what the reference feeds);
    `levels[i]` the noise level the solver steps from, ending with 0; `step(v, x, i)` returns x at
    `levels[i + 1]`.
    """

    def __init__(self, solver: Solver, steps: int, shift: float) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
        if steps < 1:
            raise ValueError(f"sampling needs at least 1 step, got {steps}")
        if solver == "unipc":
            # bh2 predictor-corrector of order 2 in x0 space, as Wan/Ovi sample.
            self.scheduler = UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, solver_order=2
            )
            self.scheduler.set_timesteps(sigmas=np.linspace(UNIPC_TOP_LEVEL, 0.0, steps + 1)[:-1])
        else:
            self.scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
            self.scheduler.set_timesteps(steps)
        self.model_times: Tensor = self.scheduler.timesteps.float()
        self.levels: Tensor = self.scheduler.sigmas.float()

    def step(self, velocity: Tensor, sample: Tensor, index: int) -> Tensor:
        timestep = self.scheduler.timesteps[index]
        out = self.scheduler.step(velocity.float(), timestep, sample.float(), return_dict=False)[0]
        return out.to(sample.dtype)
