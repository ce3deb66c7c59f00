"""Where a training run or an evolution's trials go: one decision from the cluster's nodes and the options.

`plan_placement` is pure (nodes in, Placement or UserError out) so every rule is unit-tested without a
cluster; `cluster.cluster_nodes` reads the live cluster for it. Rules, from what breaks on real GPU clusters:
- DDP ranks get whole GPUs: Ray packs fractional shares onto one device and NCCL refuses duplicates.
- Fractional GPUs only for a single-worker trial, which then caps its memory at its share.
- More than one GPU for one process becomes that many DDP workers (never silently one GPU).
- CPUs per worker follow the GPU nodes' CPU:GPU ratio, never the driver machine's core count.
- A request that no node (or not the whole cluster at once) can hold fails here, not as a silent wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from yolo_ray.config import UserError

# A multi-worker trial's own process only waits on its TorchTrainer; it takes this much CPU, carved
# out of its workers' share so that a trial never asks for more than its workers' nodes hold.
TRIAL_CPU_SLIVER = 0.01


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float
    name: str = "node"
    live: bool = True  # False: a node the autoscaler can add (a node type's room to grow)


@dataclass(frozen=True)
class NodeType:
    """A kind of node an autoscaling cluster adds on demand (its available_node_types entry)."""

    name: str
    cpus: float
    gpus: float
    max_count: int


@dataclass(frozen=True)
class Placement:
    workers: int  # Ray Train workers (DDP ranks) per run or trial
    cpus_per_worker: float
    gpus_per_worker: float
    concurrency: int  # runs (trials) at once
    one_node: bool = False  # all workers of a run fit on one node: keep them there (no all-reduce over the network)

    @property
    def gpu_memory_fraction(self) -> float | None:
        """The share of its GPU a fractional worker may fill (None: the whole device)."""
        return self.gpus_per_worker if 0 < self.gpus_per_worker < 1 else None

    def describe(self) -> str:
        return (
            f"{self.workers} worker(s) x {self.cpus_per_worker:g} CPU / {self.gpus_per_worker:g} GPU, "
            f"{self.concurrency} at once"
        )


def plan_placement(
    nodes: list[Node],
    *,
    workers: int = 1,
    gpus: float | None = None,
    cpus: float | None = None,
    device: str = "",
    concurrency: int | None = None,
    trial_process: bool = False,
    single_run: bool = False,
    what: str = "--gpus-per-trial",
) -> Placement:
    """Decide workers, per-worker CPUs/GPUs and concurrency for one run (or trial) on `nodes`.

    gpus/cpus are for the whole run (all its workers); None picks them from the cluster: one GPU per
    worker when it has GPUs (unless device is 'cpu'), CPUs by the GPU nodes' ratio. A CPU-only worker
    gets 1 CPU, so that many trials run at once, or with single_run the largest share that still fits
    all workers at once. trial_process: the run is a Tune trial whose own process needs
    TRIAL_CPU_SLIVER when it drives several workers. `what` names the GPU option in error messages.
    """
    if workers < 1:
        raise UserError(f"--ray-workers must be at least 1, got {workers}")
    if gpus is not None and (not math.isfinite(gpus) or gpus < 0):
        raise UserError(f"{what} must be 0 or more, got {gpus:g}")
    if cpus is not None and (not math.isfinite(cpus) or cpus <= 0):
        raise UserError(f"CPUs per run must be more than 0, got {cpus:g}")
    cluster_gpus = sum(n.gpus for n in nodes)
    if device == "cpu":
        if gpus:
            raise UserError(f"--device cpu contradicts {what} {gpus:g}")
        gpus = 0.0
    elif gpus is None:
        gpus = float(workers) if cluster_gpus >= 1 else 0.0
    if gpus and cluster_gpus == 0:
        raise UserError(f"{what} {gpus:g}: the Ray cluster has no GPUs ({_describe(nodes)})")
    workers, gpus_per_worker = _split_gpus(gpus, workers, what)
    cpus_per_worker = _cpus_per_worker(nodes, cpus, workers, gpus_per_worker, single_run)
    if trial_process and workers > 1:
        cpus_per_worker -= TRIAL_CPU_SLIVER
    slots = sum(_worker_slots(n, cpus_per_worker, gpus_per_worker) for n in nodes)
    need = f"{cpus_per_worker:g} CPU" + (f" + {gpus_per_worker:g} GPU" if gpus_per_worker else "")
    if slots == 0:
        kind = "node or node type" if any(not n.live for n in nodes) else "node"
        raise UserError(f"no {kind} of the Ray cluster can hold one worker of {need} ({_describe(nodes)})")
    if slots < workers:
        raise UserError(
            f"{workers} workers of {need} each do not fit in the Ray cluster at once: it holds "
            f"{slots} ({_describe(nodes)})"
        )
    if concurrency is not None and concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {concurrency}")
    one_node = workers > 1 and any(_worker_slots(n, cpus_per_worker, gpus_per_worker) >= workers for n in nodes)
    return Placement(workers, cpus_per_worker, gpus_per_worker, concurrency or max(1, slots // workers), one_node)


def _split_gpus(gpus: float, workers: int, what: str) -> tuple[int, float]:
    """(workers, GPUs per worker): whole GPUs per DDP rank; >1 GPU for one process -> that many ranks."""
    if gpus == 0:
        return workers, 0.0
    per_worker = gpus / workers
    if workers == 1 and per_worker < 1:
        return 1, per_worker
    if per_worker != int(per_worker):
        hint = "a whole number of GPUs per worker" if workers > 1 else "a whole number of GPUs (or less than 1)"
        raise UserError(
            f"{what} {gpus:g} over {workers} worker(s) is {per_worker:g} GPU each: DDP needs {hint}, "
            "since Ray would pack fractional ranks onto one device and NCCL refuses that"
        )
    if per_worker > 1:  # one process drives one device: more GPUs become more DDP ranks
        return int(gpus), 1.0
    return workers, 1.0


def _cpus_per_worker(
    nodes: list[Node], cpus: float | None, workers: int, gpus_per_worker: float, single_run: bool
) -> float:
    if cpus is not None:
        return cpus / workers
    if not gpus_per_worker:
        if not single_run:
            return 1.0
        most = int(max((n.cpus for n in nodes), default=1))
        fitting = (c for c in range(most, 0, -1) if sum(_worker_slots(n, c, 0) for n in nodes) >= workers)
        return float(next(fitting, 1))
    # The scarcest GPU node's CPUs per GPU: a worker that asked for more would never fit there.
    per_gpu = min((n.cpus / n.gpus for n in nodes if n.gpus >= gpus_per_worker), default=1.0)
    return float(max(1, math.floor(per_gpu * gpus_per_worker)))


def _worker_slots(node: Node, cpus: float, gpus: float) -> int:
    """How many workers of (cpus, gpus) fit on node at once (1e-9: float shares like 0.99 + 0.01)."""
    fits = [math.floor(node.cpus / cpus + 1e-9)] if cpus > 0 else []
    if gpus > 0:
        fits.append(math.floor(node.gpus / gpus + 1e-9))
    return max(0, min(fits)) if fits else 0


def _describe(nodes: list[Node]) -> str:
    if not nodes:
        return "no nodes"
    live = [n for n in nodes if n.live]
    shown = ", ".join(f"{n.name}: {n.cpus:g} CPU / {n.gpus:g} GPU" for n in live[:4])
    text = f"{len(live)} node(s): {shown}" + (", ..." if len(live) > 4 else "")
    addable: dict[str, list[Node]] = {}
    for n in nodes:
        if not n.live:
            addable.setdefault(n.name, []).append(n)
    for name, more in addable.items():
        text += f"; autoscaler: up to {len(more)} more {name} of {more[0].cpus:g} CPU / {more[0].gpus:g} GPU"
    return text


def can_hold_worker(node: Node, placement: Placement) -> bool:
    """Whether one worker of placement fits on node (a node that cannot never runs any of its work)."""
    return _worker_slots(node, placement.cpus_per_worker, placement.gpus_per_worker) > 0


def with_node_types(live: list[Node], types: list[NodeType]) -> list[Node]:
    """The live nodes plus, per autoscaler node type, the nodes it may still add (max_count less the live
    nodes of its shape): what a run may count on when it is willing to wait for the autoscaler."""
    nodes = list(live)
    for t in types:
        running = sum(1 for n in live if (n.cpus, n.gpus) == (t.cpus, t.gpus))
        nodes += [Node(t.cpus, t.gpus, t.name, live=False)] * max(0, t.max_count - running)
    return nodes


def missing_now(nodes: list[Node], placement: Placement) -> str | None:
    """What the live nodes lack to start one run of placement at once ('2 GPUs'), or None when they hold it."""
    live = [n for n in nodes if n.live]
    slots = sum(_worker_slots(n, placement.cpus_per_worker, placement.gpus_per_worker) for n in live)
    if slots >= placement.workers:
        return None
    if placement.gpus_per_worker:
        return f"{placement.workers * placement.gpus_per_worker:g} GPU(s)"
    return f"{placement.workers * placement.cpus_per_worker:g} CPU(s)"


def check_device_spelling(device: str) -> str:
    """--device normalized ('', 'cpu' or CUDA indices like '0,1'); a UserError for anything else. Spelling
    only: a cluster's GPUs are not this machine's, so whether they exist is for placement to say."""
    device = str(device).strip().lower().replace("cuda:", "")
    if device not in ("", "cpu") and not all(index.strip().isdigit() for index in device.split(",")):
        raise UserError(f"--device {device!r}: expected '', 'cpu' or CUDA indices like '0' or '0,1'")
    return device
