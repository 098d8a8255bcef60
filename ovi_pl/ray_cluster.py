"""Joining the Ray cluster a run is given, or starting a private in-process one: what curation's pipeline
and evaluation's model-environment scorers (ovi_pl/envs.py) run on."""
from __future__ import annotations

import os
import secrets

from ovi_pl.envs import REPO_ROOT


def join_or_start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the cluster `address` or RAY_ADDRESS names, or start an in-process one of `num_cpus`
    (default: all) that leaves nothing behind in the home or temp directories for later runs to trip on."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # Under `ray job submit` the job's runtime_env (working_dir) already applies to this driver.
        ray.init(address=address)
        return
    # Workers of a local cluster inherit this environment; the repo root on PYTHONPATH lets them
    # import the project when the driver was started as a script rather than from an installed package.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    # With no auth configured, Ray starts a new cluster with token auth and saves a fresh token to
    # ~/.ray/auth_token. That file outlives this private cluster and turns token auth on for every
    # later `ray start --head` of the user, while `ray job submit` only sends a token under
    # RAY_AUTH_MODE=token: the README's commands then fail with "Missing authentication token".
    # A token of its own in the environment (the cluster's processes inherit it) keeps this cluster
    # behind token auth and leaves nothing in the home directory. Auth the user set up is left alone.
    if not any(os.environ.get(v) for v in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # address="local": never attach to some other cluster on this machine that `ray start` left running.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
