"""Joining the Ray cluster and checking, before anything trains, that its nodes can do what we ask.

What a user's cluster lacks only shows up once work lands on another node: an unreachable address
hangs in Ray's reconnect loop, a run directory on the driver's local disk is invisible to a rank 0
elsewhere, a dataset path exists only on the driver, and `yolo_ray` may be installed only where the
driver runs. Each of these is checked or fixed here at start, with one clear error.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from yolo_ray.config import UserError
from yolo_ray.train.rundir import in_ray_job

CONNECT_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 120.0


def ray_init_address(address: str | None) -> str | None:
    """What to hand ray.init: the given address, else $RAY_ADDRESS (set in a Ray job), else a new local cluster."""
    if address:
        return address
    return None if os.environ.get("RAY_ADDRESS") else "local"


def connect(address: str | None, log_to_driver: bool = True, visible_gpus: str | None = None) -> bool:
    """Join (or start) the Ray cluster; returns whether this call connected (and so must ray.shutdown()).

    visible_gpus ('0,1'): the GPUs a local cluster started here may use, from --device.
    """
    import ray

    if ray.is_initialized():
        return False
    target = ray_init_address(address)
    if target not in (None, "local"):
        check_reachable(target)
    if target == "local" and visible_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_gpus
    try:
        ray.init(address=target, log_to_driver=log_to_driver, runtime_env=package_runtime_env(target))
    except ConnectionError as e:
        raise UserError(f"--address {address or os.environ.get('RAY_ADDRESS')}: no Ray cluster there ({e})") from None
    return True


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within timeout_s when nothing answers at a host:port address (ray.init would retry forever)."""
    host_port = _resolve_auto(address) if address == "auto" else address.split("://")[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected 'auto' or host:port of a Ray head (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"--address {address}: no Ray cluster answers at {host}:{port} "
                        f"({e.strerror or e or 'timed out'} after at most {timeout_s:.0f} s)") from None


def _resolve_auto(address: str) -> str:
    from ray._private.services import canonicalize_bootstrap_address

    try:
        resolved = canonicalize_bootstrap_address(address)
    except ConnectionError as e:
        raise UserError(f"--address auto: no running Ray cluster found on this machine ({e})") from None
    if not resolved:
        raise UserError("--address auto: no running Ray cluster found on this machine (start one: ray start --head)")
    return resolved


def package_runtime_env(target: str | None) -> dict | None:
    """Ship this yolo_ray package to every worker when joining a cluster whose nodes may not have it.

    Not for a local cluster (same machine, same install) nor inside a Ray job, whose working_dir
    already travels to every worker with the job.
    """
    if target == "local" or in_ray_job():
        return None
    package = Path(__file__).resolve().parents[1]
    return {"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"]}


def _probe_missing(paths: list[str]) -> tuple[str, list[str]]:
    return socket.gethostname(), [p for p in paths if not os.path.exists(p)]


def verify_nodes_see(shared_dir: str | Path | None, inputs: list[str | None]) -> None:
    """Check from every other node that can run workers that shared_dir is this very folder and inputs exist.

    shared_dir is where rank 0 will write the run: a marker written here must be visible there (how
    Ray Train checks its own storage). A single-node cluster needs no check. Inputs that are names, not
    absolute paths (official weights, shipped dataset yamls), are fetched by each node itself.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    others = [n for n in ray.nodes() if n.get("Alive") and n["NodeID"] != here
              and (n["Resources"].get("CPU", 0) > 0 or n["Resources"].get("GPU", 0) > 0)]
    if not others:
        return
    paths = [str(p) for p in inputs if p and Path(p).is_absolute()]
    marker = None
    if shared_dir is not None:
        shared_dir = Path(shared_dir)
        try:
            shared_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{shared_dir}: cannot create the output folder ({e.strerror or e})") from None
        marker = shared_dir / f".yolo_ray-shared-{uuid.uuid4().hex}"
        try:
            marker.touch()
        except OSError as e:
            raise UserError(f"{shared_dir}: cannot write into the output folder ({e.strerror or e})") from None
    probe = ray.remote(num_cpus=0)(_probe_missing)
    try:
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(paths + ([str(marker)] if marker else [])) for n in others]
        try:
            answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise UserError(f"Ray nodes did not answer a file check within {PROBE_TIMEOUT_S:.0f} s") from None
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)
    unshared = sorted({host for host, missing in answers if marker and str(marker) in missing})
    if unshared:
        raise UserError(f"{shared_dir}: this folder is not shared with Ray node(s) {', '.join(unshared)}: rank 0 "
                        "may run there and its results would be lost; put --project on a filesystem every node "
                        "mounts at the same path (NFS or similar)")
    for path in paths:
        hosts = sorted({host for host, missing in answers if path in missing})
        if hosts:
            raise UserError(f"{path}: not found on Ray node(s) {', '.join(hosts)}; data and weights must be on "
                            "a filesystem every node mounts at the same path")
