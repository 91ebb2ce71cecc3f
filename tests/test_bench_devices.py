"""Devices, dtypes, threads and the memory refusal; CUDA paths run only where CUDA is present."""

from __future__ import annotations

import pytest
import torch

from mbcost.bench import devices
from mbcost.bench.devices import (
    Device,
    check_dtype,
    check_memory,
    check_threads,
    estimate_memory,
    resolve_device,
    runtime,
)
from mbcost.bench.errors import DeviceError, MemoryRefusal
from mbcost.cost.analyze import analyze

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU = Device("cpu", None, "Test CPU")


def test_cpu_resolves_with_its_model_name():
    d = resolve_device("cpu")
    assert d.type == "cpu" and d.torch_device == "cpu"
    assert d.name and d.name != "cpu"


@pytest.mark.parametrize("text", ["tpu", "", "cpu:1", "gpu"])
def test_unknown_devices_are_refused(text):
    with pytest.raises(DeviceError, match="device"):
        resolve_device(text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")


def test_float16_on_a_cpu_without_native_half_is_refused(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native", lambda dtype: dtype != "float16")
    with pytest.raises(DeviceError, match="float16 is not supported on this CPU"):
        check_dtype(CPU, "float16")
    check_dtype(CPU, "bfloat16")
    check_dtype(CPU, "float32")
    monkeypatch.setattr(devices, "cpu_has_native", lambda dtype: True)
    check_dtype(CPU, "float16")  # a CPU with avx512_fp16 / amx_fp16 may


def test_float64_is_not_a_measurement_dtype():
    with pytest.raises(DeviceError, match="unsupported dtype"):
        check_dtype(CPU, "float64")


def test_threads_default_and_refusal():
    assert check_threads(None) == torch.get_num_threads()
    assert check_threads(1) == 1
    with pytest.raises(DeviceError, match="--threads"):
        check_threads(0)


def test_runtime_restores_threads_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with runtime(CPU, 1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_memory_estimate_from_the_analytic_model():
    cost = analyze("v2", 224, 8)
    est = estimate_memory(cost)
    assert est.weight_bytes == 3_504_872 * 4
    assert est.input_bytes == 8 * 3 * 224 * 224 * 4
    assert est.activation_bytes == 2 * cost.peak_activation_bytes
    assert est.total == est.weight_bytes + est.input_bytes + est.activation_bytes


def test_a_batch_that_does_not_fit_is_refused_with_the_estimate(monkeypatch):
    monkeypatch.setattr(devices, "available_memory", lambda device: 100_000_000)  # 100 MB
    cost = analyze("v2", 224, 64)
    with pytest.raises(MemoryRefusal) as info:
        check_memory(cost, CPU)
    message = str(info.value)
    assert "v2 at batch 64 needs about" in message
    assert "100.00 MB is available" in message
    assert "\n" not in message
    check_memory(analyze("v2", 224, 1), CPU)  # batch 1 fits in 100 MB


def test_unknown_available_memory_does_not_refuse(monkeypatch):
    monkeypatch.setattr(devices, "available_memory", lambda device: None)
    check_memory(analyze("v2", 224, 1024), CPU)


def test_available_memory_on_linux_reads_meminfo():
    free = devices.available_memory(CPU)
    assert free is None or free > 0


# -- CUDA (skipped without a GPU) ------------------------------------------------------------------


@pytest.mark.cuda
@needs_cuda
def test_cuda_resolves_and_reports_free_memory():
    d = resolve_device("cuda")
    assert d.type == "cuda" and d.index is not None and d.name
    assert devices.available_memory(d) > 0
    check_dtype(d, "float16")
    with pytest.raises(DeviceError):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.cuda
@needs_cuda
def test_cuda_bfloat16_follows_the_device_capability():
    d = resolve_device("cuda")
    if torch.cuda.is_bf16_supported():
        check_dtype(d, "bfloat16")
    else:
        with pytest.raises(DeviceError, match="bfloat16"):
            check_dtype(d, "bfloat16")


@pytest.mark.cuda
@needs_cuda
def test_cuda_runtime_sets_and_restores_cudnn_benchmark():
    d = resolve_device("cuda")
    before = torch.backends.cudnn.benchmark
    with runtime(d, 1, cudnn_benchmark=not before):
        assert torch.backends.cudnn.benchmark is (not before)
    assert torch.backends.cudnn.benchmark is before


def test_kept_heap_applies_on_glibc_and_is_recorded():
    from mbcost.bench.model_bench import BenchSettings

    with devices.kept_heap(True) as applied:
        assert applied is devices.can_keep_heap()
    with devices.kept_heap(False) as applied:
        assert applied is False
    env = BenchSettings(CPU).env()
    assert env.kept_heap is devices.can_keep_heap()
    assert env.flush_denormal is True
    assert BenchSettings(CPU, keep_heap=False, flush_denormal=False).env().kept_heap is False
