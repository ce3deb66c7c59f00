"""Joining the Ray cluster and checking, before anything trains, that its nodes can do what we ask.

What a user's cluster lacks only shows up once work lands on another node: an unreachable address
hangs in Ray's reconnect loop, a run directory on the driver's local disk is invisible to a rank 0
elsewhere, a dataset path exists only on the driver, and `yolo_ray` may be installed only where the
driver runs. Each of these is checked or fixed here at start, with one clear error.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from yolo_ray.config import UserError
from yolo_ray.cluster.placement import Node, NodeType, Placement, can_hold_worker, missing_now, with_node_types
from yolo_ray.paths import can_create, in_ray_job
from yolo_ray.console import LOGGER

CONNECT_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 120.0
WAIT_REPORT_S = 30.0  # a progress line this often while waiting for the autoscaler
# How long a run waits to be placed (cloud GPU nodes take minutes to boot) before one error line.
PLACEMENT_TIMEOUT_S = 900.0


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
    # $RAY_ADDRESS names a cluster as --address does and gets the same checks (ray.init would retry a dead one forever)
    named, label = (target, "--address") if target else (os.environ.get("RAY_ADDRESS"), "RAY_ADDRESS")
    if named and named.startswith("ray://"):
        raise UserError(
            f"{label} {named}: Ray Client (ray://) cannot run this: the run's checks and Tune's "
            "driver must run on the cluster; run the script on the head node with --address auto, "
            "or submit it with `ray job submit`"
        )
    if named and named != "local":
        check_reachable(named, label=label)
    if target != "local":
        send_auth_token_if_available()
    else:
        keep_new_token_in_env_without_home()
    if target == "local" and visible_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_gpus
    from yolo_ray.console import quiet_ray

    try:
        ray.init(
            address=target,
            log_to_driver=log_to_driver,
            runtime_env=package_runtime_env(target),
            logging_level=quiet_ray(),
        )
    except ConnectionError as e:
        raise UserError(f"{label} {named}: no Ray cluster there ({e})") from None
    return True


def send_auth_token_if_available() -> None:
    """Present this machine's Ray auth token when RAY_AUTH_MODE is unset.

    In Ray 2.60 `ray start --head` turns token authentication on when the machine has a token (any
    earlier local ray.init() writes ~/.ray/auth_token), but ray.init(address=...) sends it only under
    RAY_AUTH_MODE=token and otherwise retries "Unauthenticated" until it gives up. A token sent to a
    cluster without authentication is ignored. Ray's own helper sets the variable (inherited by every
    process started from here) and refreshes its cached config; Ray versions before token auth lack it.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def keep_new_token_in_env_without_home() -> None:
    """A new local cluster's auth token handed over in the environment when ~/.ray cannot hold it.

    Ray 2.60 writes the token it makes for a new local cluster to ~/.ray/auth_token, and fails with a
    PermissionError where the home folder is read-only (a shared machine, a locked-down container). It
    reads $RAY_AUTH_TOKEN before that file, and every process the cluster starts inherits it.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    token_file = Path.home() / ".ray" / "auth_token"
    if token_file.is_file() or can_create(token_file.parent):
        return
    os.environ["RAY_AUTH_TOKEN"] = uuid.uuid4().hex + uuid.uuid4().hex


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S, label: str = "--address") -> None:
    """Fail within timeout_s when nothing answers at a host:port address (ray.init would retry forever).

    label: where the address came from (--address or RAY_ADDRESS), for the error line."""
    host_port = _resolve_auto(address, label) if address == "auto" else address.split("://")[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"{label} {address!r}: expected 'auto' or host:port of a Ray head (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(
            f"{label} {address}: no Ray cluster answers at {host}:{port} "
            f"({e.strerror or e or 'timed out'} after at most {timeout_s:.0f} s)"
        ) from None


def _resolve_auto(address: str, label: str) -> str:
    from ray._private.services import canonicalize_bootstrap_address

    try:
        resolved = canonicalize_bootstrap_address(address)
    except ConnectionError as e:
        raise UserError(f"{label} auto: no running Ray cluster found on this machine ({e})") from None
    if not resolved:
        raise UserError(f"{label} auto: no running Ray cluster found on this machine (start one: ray start --head)")
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


def autoscaler_node_types() -> list[NodeType]:
    """The node types the connected cluster's autoscaler may add, with their most nodes; [] without one.

    Autoscaler v2 (KubeRay, recent cloud clusters) publishes them in the GCS. The classic autoscaler
    keeps them in its config file on the head node (ray up's ~/ray_bootstrap_config.yaml, or the file
    given to `ray start --autoscaling-config`), read there by a zero-CPU task on the head.
    """
    import ray
    from ray._private.state import state
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    config = state.get_cluster_config()
    if config is not None and config.node_group_configs:
        return [
            NodeType(
                g.name,
                float(g.resources.get("CPU", 0)),
                float(g.resources.get("GPU", 0)),
                int(g.max_count) if g.max_count >= 0 else 1000,
            )
            for g in config.node_group_configs
        ]
    head = next(
        (n["NodeID"] for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" in n["Resources"]), None
    )
    if head is None:
        return []
    reader = ray.remote(num_cpus=0)(_node_types_in_autoscaler_config)
    ref = reader.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote(
        ray.get_runtime_context().gcs_address
    )
    try:
        return [NodeType(*t) for t in ray.get(ref, timeout=PROBE_TIMEOUT_S)]
    except ray.exceptions.GetTimeoutError:
        return []


def _node_types_in_autoscaler_config(gcs_address: str) -> list[tuple[str, float, float, int]]:
    """(name, CPUs, GPUs, max workers) of each worker node type in this head's autoscaler config file."""
    import yaml

    config_path = None
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.endswith("autoscaler/_private/monitor.py") for a in args) and f"--gcs-address={gcs_address}" in args:
            config_path = next((a.split("=", 1)[1] for a in args if a.startswith("--autoscaling-config=")), None)
            break
    if not config_path:
        return []
    try:
        config = yaml.safe_load(Path(config_path).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    head_type = config.get("head_node_type")
    return [
        (
            name,
            float(t.get("resources", {}).get("CPU", 0)),
            float(t.get("resources", {}).get("GPU", 0)),
            int(t.get("max_workers", config.get("max_workers", 0))),
        )
        for name, t in (config.get("available_node_types") or {}).items()
        if name != head_type
    ]


def wait_for_resources(
    placement: Placement, nodes: list[Node], timeout_s: float, what: str = "the run", interval_s: float = WAIT_REPORT_S
) -> None:
    """Return once the cluster can hold one run of placement, waiting up to timeout_s for the autoscaler
    (or for other jobs to free what they hold), with a progress line every interval_s; UserError after.

    A placement group of the run's bundles asks the autoscaler for exactly what the run needs; it is
    removed at once so that Ray Train's (or Tune's) own request gets the nodes it brought.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundle = {"CPU": placement.cpus_per_worker}
    if placement.gpus_per_worker:
        bundle["GPU"] = placement.gpus_per_worker
    group = placement_group([bundle] * placement.workers, strategy="STRICT_PACK" if placement.one_node else "PACK")
    try:
        if _ready_at_once(group):
            return
        lacking = missing_now(nodes, placement) or "resources other jobs hold"
        grow = "the autoscaler is adding nodes" if any(not n.live for n in nodes) else "no autoscaler"
        t0 = time.monotonic()
        while True:
            waited = time.monotonic() - t0
            LOGGER.info(
                f"Ray placement: waiting for {lacking} for {what} ({grow}; {waited:.0f} s of at most "
                f"{timeout_s:.0f} s, --placement-timeout)"
            )
            try:
                ray.get(group.ready(), timeout=max(0.1, min(interval_s, timeout_s - waited)))
                LOGGER.info(f"Ray placement: resources ready after {time.monotonic() - t0:.0f} s")
                return
            except ray.exceptions.GetTimeoutError:
                if time.monotonic() - t0 >= timeout_s:
                    raise UserError(
                        f"{what} could not be placed within {timeout_s:.0f} s (--placement-timeout): "
                        f"{placement.workers} worker(s) of {bundle} did not fit; {grow}"
                    ) from None
    finally:
        remove_placement_group(group)


def _ready_at_once(group) -> bool:
    import ray

    try:
        ray.get(group.ready(), timeout=2.0)
        return True
    except ray.exceptions.GetTimeoutError:
        return False


def node_weights(weights: str | None) -> str | None:
    """weights as given, or this node's own copy of the shipped checkpoint when weights names it.

    The driver hands workers its install's path of the built-in weights; on another node the package
    arrives through py_modules (or another install) at another path.
    """
    from yolo_ray.data.synthetic import BUILTIN_WEIGHTS_NAME, builtin_weights

    if weights and Path(weights).name == BUILTIN_WEIGHTS_NAME and not Path(weights).is_file():
        return str(builtin_weights())
    if weights and not Path(weights).is_file():  # a node that joined after the start-up check
        raise UserError(
            f"{weights}: weights file not found on Ray node {socket.gethostname()}; weights must be "
            "on a filesystem every node mounts at the same path"
        )
    return weights


def files_every_node_needs(opt: dict) -> list[str]:
    """The input files a worker on any node opens by the driver's path.

    Not the built-in data or weights (each node has its own), nor a stored run's files (each node
    downloads the run from its storage URI), nor a --cfg that names a shipped model.
    """
    from yolo_ray.data.synthetic import BUILTIN_WEIGHTS_NAME, data_every_node_needs

    stored_resume = bool(opt.get("storage_uri") and opt.get("resume"))
    weights = opt.get("weights")
    needed = [data_every_node_needs(opt.get("data"))]
    if weights and not stored_resume and Path(weights).name != BUILTIN_WEIGHTS_NAME:
        needed.append(weights)
    if opt.get("resume") and not stored_resume:
        needed.append(opt["resume"])
    cfg = opt.get("cfg")
    if cfg and os.path.isabs(str(cfg)):  # a cfg file (made absolute by the scripts), not a shipped name
        needed.append(cfg)
    return [str(p) for p in needed if p]


def _probe_missing(paths: list[str]) -> tuple[str, list[str]]:
    return socket.gethostname(), [p for p in paths if not os.path.exists(p)]


def verify_nodes_see(shared_dir: str | Path | None, inputs: list[str | None], placement: Placement) -> None:
    """Check from every other node that can hold one of placement's workers that shared_dir is this very
    folder and inputs exist.

    shared_dir is where rank 0 will write the run: a marker written here must be visible there (how
    Ray Train checks its own storage). A single-node cluster needs no check, nor a node too small for a
    worker (a CPU-only head under a GPU run). Nodes that join later are checked by the workers
    themselves: a missing input is a clear error there, not a retry.
    Inputs that are names, not absolute paths (official weights, shipped dataset yamls), are fetched by
    each node itself.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    others = [
        n
        for n in ray.nodes()
        if n.get("Alive")
        and n["NodeID"] != here
        and can_hold_worker(Node(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0))), placement)
    ]
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
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                paths + ([str(marker)] if marker else [])
            )
            for n in others
        ]
        try:
            answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise UserError(f"Ray nodes did not answer a file check within {PROBE_TIMEOUT_S:.0f} s") from None
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)
    unshared = sorted({host for host, missing in answers if marker and str(marker) in missing})
    if unshared:
        raise UserError(
            f"{shared_dir}: this folder is not shared with Ray node(s) {', '.join(unshared)}: rank 0 "
            "may run there and its results would be lost; put --project on a filesystem every node "
            "mounts at the same path (NFS or similar)"
        )
    for path in paths:
        hosts = sorted({host for host, missing in answers if path in missing})
        if hosts:
            raise UserError(
                f"{path}: not found on Ray node(s) {', '.join(hosts)}; data and weights must be on "
                "a filesystem every node mounts at the same path"
            )


def cluster_nodes() -> list[Node]:
    """The connected Ray cluster's alive nodes with their total CPUs and GPUs (logical resources), plus the
    nodes its autoscaler may add (a GPU worker group at zero is the normal state of a cloud cluster at rest)."""
    import ray

    live = [
        Node(
            float(n["Resources"].get("CPU", 0)),
            float(n["Resources"].get("GPU", 0)),
            n.get("NodeManagerAddress", "node"),
        )
        for n in ray.nodes()
        if n.get("Alive")
    ]
    return with_node_types(live, autoscaler_node_types())
