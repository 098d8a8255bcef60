"""The Ray cluster a run gets: joining or starting it (ovi_pl.ray_cluster), and checking before any work that
the stages fit on it.

Model stages run as fixed-size actor pools that hold their CPUs (and GPUs) for the whole run; the
task stages (probe, scenes, transcode, ...) share what is left. If the pools take every CPU, the task
stages never run and the pools wait for rows forever: Ray Data does not fail, it stalls. So the run
checks the sums first and names the settings that would make it fit.
"""
from __future__ import annotations

from collections.abc import Mapping

from ovi_pl.ray_cluster import join_or_start_ray

from .config import CurationConfig
from .stage import Stage


class ClusterTooSmallError(RuntimeError):
    """The stages' actor pools leave the task stages nothing to run on."""


def init_ray(config: CurationConfig) -> None:
    """Connect to the cluster the config or RAY_ADDRESS names, or start an in-process one."""
    join_or_start_ray(config.ray.address, config.ray.num_cpus)


def check_stages_fit(stages: list[Stage], cluster: Mapping[str, float],
                     settings: Mapping[str, str] | None = None) -> None:
    """Raise ClusterTooSmallError, before any work, when the actor pools of `stages` leave no room for
    their task stages on a cluster of `cluster` resources (`ray.cluster_resources()`).

    `settings` maps a stage name to the config section that sizes its pool (e.g. "filters.aesthetic"),
    so the message names the keys to change.
    """
    settings = settings or {}
    pools = [s for s in stages if s.resources.actors]
    tasks = [s for s in stages if not s.resources.actors]
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))

    def pool_line(s: Stage, unit: str, each: float) -> str:
        where = settings.get(s.name)
        keys = f" ({where}.actors" + (f", {where}.gpus_per_actor" if unit == "GPU" else "") + ")" if where else ""
        return f"{s.name}: {s.resources.actors} actor(s) x {each:g} {unit}{keys}"

    problems = []
    pool_cpus = sum(s.resources.actors * s.resources.cpus for s in pools)
    task_cpus = max((s.resources.cpus for s in tasks), default=0.0)
    if pools and pool_cpus + task_cpus > cpus:
        lines = "; ".join(pool_line(s, "CPU", s.resources.cpus) for s in pools)
        problems.append(
            f"the actor pools hold {pool_cpus:g} of the cluster's {cpus:g} CPUs ({lines}), leaving "
            f"{max(cpus - pool_cpus, 0):g} for the task stages ({', '.join(s.name for s in tasks)}), which need "
            f"{task_cpus:g}: the run would stall. Give the cluster at least {pool_cpus + task_cpus:g} CPUs "
            "(ray.num_cpus for the in-process cluster, more CPUs or nodes for a started one) or shrink the pools")
    pool_gpus = sum(s.resources.actors * s.resources.gpus for s in pools)
    if pool_gpus > gpus:
        lines = "; ".join(pool_line(s, "GPU", s.resources.gpus) for s in pools if s.resources.gpus)
        problems.append(f"the actor pools need {pool_gpus:g} GPUs ({lines}) and the cluster has {gpus:g}: "
                        "run on GPU nodes, or lower the pools' actors or gpus_per_actor")
    if problems:
        raise ClusterTooSmallError("the stages do not fit on this Ray cluster: " + "; and ".join(problems))
