"""plan_placement: GPUs, CPUs and concurrency from the cluster's nodes, and the requests it refuses."""

from __future__ import annotations

import pytest

from yolo_ray.config import UserError
from yolo_ray.cluster.placement import TRIAL_CPU_SLIVER, Node, NodeType, plan_placement

GPU_NODES = [Node(16, 8, "a"), Node(16, 8, "b")]  # two 8-GPU nodes with 2 CPUs per GPU
CPU_NODES = [Node(4, 0, "a"), Node(2, 0, "b")]


def test_ddp_trial_without_gpu_option_gets_one_whole_gpu_per_worker():
    p = plan_placement(GPU_NODES, workers=2)
    assert (p.workers, p.gpus_per_worker, p.cpus_per_worker) == (2, 1.0, 2.0)
    assert p.concurrency == 8  # 16 GPUs / 2 per trial
    assert p.gpu_memory_fraction is None


@pytest.mark.parametrize("gpus, workers", [(3, 2), (1, 2), (1.5, 1)])
def test_fractional_gpus_per_ddp_rank_are_refused(gpus, workers):
    with pytest.raises(UserError, match="GPU each: DDP needs"):
        plan_placement(GPU_NODES, workers=workers, gpus=gpus)


def test_fractional_gpu_single_worker_trial_shares_a_device_with_a_memory_cap():
    p = plan_placement([Node(16, 1)], gpus=0.5)
    assert (p.workers, p.gpus_per_worker, p.gpu_memory_fraction) == (1, 0.5, 0.5)
    assert p.cpus_per_worker == 8.0  # half of the node's 16 CPUs per GPU
    assert p.concurrency == 2


@pytest.mark.parametrize("gpus, expected_workers", [(2, 2), (4, 4)])
def test_several_gpus_for_one_process_become_ddp_workers(gpus, expected_workers):
    p = plan_placement(GPU_NODES, workers=1, gpus=gpus)
    assert (p.workers, p.gpus_per_worker) == (expected_workers, 1.0)


def test_gpus_asked_on_a_cluster_without_gpus_fail_at_once():
    with pytest.raises(UserError, match="has no GPUs"):
        plan_placement(CPU_NODES, gpus=1)


def test_cpu_device_keeps_a_gpu_cluster_off_the_gpus():
    p = plan_placement(GPU_NODES, workers=2, device="cpu")
    assert p.gpus_per_worker == 0 and p.cpus_per_worker == 1.0
    with pytest.raises(UserError, match="contradicts"):
        plan_placement(GPU_NODES, gpus=1, device="cpu")


def test_cpu_only_cluster_runs_one_cpu_trials_as_many_as_fit():
    p = plan_placement(CPU_NODES)
    assert (p.workers, p.cpus_per_worker, p.gpus_per_worker, p.concurrency) == (1, 1.0, 0.0, 6)


def test_single_run_takes_the_largest_cpu_share_that_fits_all_workers():
    both_on_the_big_node = plan_placement([Node(8, 0), Node(2, 0)], workers=2, single_run=True)
    assert both_on_the_big_node.cpus_per_worker == 4.0
    assert plan_placement([Node(8, 0), Node(2, 0)], workers=1, single_run=True).cpus_per_worker == 8.0
    assert plan_placement([Node(1, 0)] * 3, workers=2, single_run=True).cpus_per_worker == 1.0


def test_cpus_follow_the_gpu_nodes_not_a_cpu_only_head():
    nodes = [Node(64, 0, "head"), Node(8, 4, "gpu")]
    p = plan_placement(nodes, workers=2)
    assert (p.cpus_per_worker, p.gpus_per_worker) == (2.0, 1.0)


def test_worker_too_big_for_every_node_is_one_clear_error():
    with pytest.raises(UserError, match="no node of the Ray cluster can hold one worker of 32 CPU"):
        plan_placement(GPU_NODES, workers=1, cpus=32, gpus=1)


def test_workers_that_do_not_fit_at_once_are_refused_not_left_waiting():
    with pytest.raises(UserError, match="3 workers of 4 CPU each do not fit .* holds 1"):
        plan_placement(CPU_NODES, workers=3, cpus=12)


def test_multi_worker_trial_carves_its_process_sliver_out_of_its_workers():
    nodes = [Node(1, 0)] * 3
    p = plan_placement(nodes, workers=2, cpus=2, trial_process=True)
    assert p.cpus_per_worker == pytest.approx(1 - TRIAL_CPU_SLIVER)
    assert p.concurrency == 1  # 3 one-CPU nodes hold one 2-worker trial (plus its sliver)


def test_explicit_concurrency_is_kept_and_checked():
    assert plan_placement(CPU_NODES, concurrency=2).concurrency == 2
    with pytest.raises(UserError, match="--concurrency must be at least 1"):
        plan_placement(CPU_NODES, concurrency=0)


AUTOSCALING = [NodeType("gpu_node", 8, 2, max_count=3)]


def test_gpu_worker_group_at_zero_still_plans_gpu_trials_from_the_autoscalers_node_types():
    from yolo_ray.cluster.placement import missing_now, with_node_types

    nodes = with_node_types([Node(4, 0, "head")], AUTOSCALING)  # a cloud cluster at rest: CPU head only
    p = plan_placement(nodes, workers=2)
    assert (p.workers, p.gpus_per_worker, p.cpus_per_worker) == (2, 1.0, 4.0)  # never silently CPU
    assert p.concurrency == 3 and p.one_node  # three nodes of 2 GPUs: one 2-GPU trial on each
    assert missing_now(nodes, p) == "2 GPU(s)"  # the run waits for the autoscaler
    assert missing_now(with_node_types([Node(4, 0, "head"), Node(8, 2, "10.0.0.5")], AUTOSCALING), p) is None


def test_live_nodes_of_a_node_type_count_once():
    from yolo_ray.cluster.placement import with_node_types

    nodes = with_node_types([Node(4, 0, "head"), Node(8, 2, "10.0.0.5")], AUTOSCALING)
    assert sum(n.gpus for n in nodes) == 6  # max 3 gpu nodes, one of them already up


def test_request_no_node_type_can_ever_hold_is_one_error_naming_the_autoscaler():
    from yolo_ray.cluster.placement import with_node_types

    nodes = with_node_types([Node(4, 0, "head")], AUTOSCALING)
    with pytest.raises(
        UserError,
        match="no node or node type .* hold one worker of 16 CPU \\+ 1 GPU .*autoscaler: up to 3 more gpu_node",
    ):
        plan_placement(nodes, workers=1, gpus=1, cpus=16)
    with pytest.raises(UserError, match="8 workers of 4 CPU \\+ 1 GPU each do not fit"):
        plan_placement(nodes, workers=8)


def test_ddp_workers_spread_over_nodes_only_when_no_node_holds_them_all():
    assert plan_placement(GPU_NODES, workers=8).one_node
    assert not plan_placement(GPU_NODES, workers=16).one_node
    assert not plan_placement(GPU_NODES, workers=1).one_node  # one worker: nothing to keep together
