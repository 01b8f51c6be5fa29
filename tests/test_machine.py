"""The machine description that results record."""
import os

import torch

from l2o_graphs.machine import cpu_model, describe_machine, machine_label


def test_the_description_names_this_cpu_its_cores_and_torch_threads():
    info = describe_machine()
    assert info["cpu"] == cpu_model() and info["cpu"]
    assert info["cores"] == os.cpu_count() and info["torch_threads"] == torch.get_num_threads()
    assert ("gpu" in info) == torch.cuda.is_available()


def test_labels_against_hand_written_ones():
    cpu = {"cpu": "AMD EPYC 7B13", "cores": 2, "torch_threads": 1}
    assert machine_label(cpu) == "AMD EPYC 7B13 (2 cores), 1 thread"
    assert machine_label({**cpu, "torch_threads": 16, "cores": 16}) == "AMD EPYC 7B13 (16 cores), 16 threads"
    gpu = {**cpu, "gpu": "NVIDIA H100 80GB HBM3"}
    assert machine_label(gpu) == "NVIDIA H100 80GB HBM3; AMD EPYC 7B13 (2 cores), 1 thread"
    assert machine_label(gpu, gpu=False) == machine_label(cpu)
    # a description without thread or core counts (older records) still labels
    assert machine_label({"cpu": "AMD EPYC 7B13"}) == "AMD EPYC 7B13 (? cores)"


def test_a_cpu_only_description_leaves_the_gpu_out():
    assert "gpu" not in describe_machine(gpu=False)
