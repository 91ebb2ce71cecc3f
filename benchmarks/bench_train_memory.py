"""Benchmark: a training step's memory, estimated and measured, on torchvision and timm models.

For each model: ``analyze(model, inputs=(batch, 3, size, size), mode="train", optimizer="sgd")``'s
``train_peak_memory_bytes`` minus the weights and buffers (which exist before the step) next to the CPU
allocator's peak over one real step, measured independently of the engine: ``zero_grad(set_to_none=True)``
before it (so the step allocates the gradients), then forward, ``out.float().sum().backward()``,
``optimizer.step()`` (plain SGD, no state), every allocation and free recorded by PyTorch's profiler
(``mbcost.bench.memory.allocations_during``) and summed in time order. One warm-up step first; one thread
(the engine's CPU convolution scratch model assumes PyTorch's one-thread kernels).

Prints, per model: the estimate, its parts at the step's worst point (activations, parameters' gradients),
the measured peak, their ratio and where the estimate's worst point is.

Run: python benchmarks/bench_train_memory.py [--models tv:resnet18,timm:deit_tiny_patch16_224,...]
         [--batch 4] [--size 224] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

MB = 1e6

DEFAULT_MODELS = ("tv:resnet18,tv:mobilenet_v3_large,tv:efficientnet_b0,tv:densenet121,tv:vit_b_16,tv:swin_t,"
                  "timm:convnext_atto,timm:ghostnet_100,timm:deit_tiny_patch16_224,timm:vit_small_patch16_224,"
                  "timm:swin_tiny_patch4_window7_224,timm:efficientformer_l1")


def build(spec: str) -> Any:
    """``tv:NAME`` (torchvision) or ``timm:NAME``, random weights."""
    source, _, name = spec.partition(":")
    if source == "tv":
        import torchvision

        return torchvision.models.get_model(name, weights=None)
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False)
    raise SystemExit(f"bench_train_memory: error: {spec!r}: name a model as tv:NAME or timm:NAME")


def measured_step_peak(model: Any, x: Any) -> int:
    """The allocator's peak over one SGD step, beyond what existed before it (weights, buffers, input)."""
    import torch

    from mbcost.bench.memory import allocations_during, peak_of

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    model(x.clone()).float().sum().backward()  # warm-up: the allocator and oneDNN settle
    opt.step()
    opt.zero_grad(set_to_none=True)  # the measured step allocates the gradients

    def step() -> None:
        model(x.clone()).float().sum().backward()
        opt.step()

    return peak_of(allocations_during(step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    import mbcost

    torch.set_num_threads(args.threads)
    print(f"training step, SGD, batch {args.batch}, {args.size}x{args.size}, float32, CPU, {args.threads} thread(s)")
    print(f"{'model':34s} {'estimate':>9s} {'(acts':>8s} {'+ grads)':>9s} {'measured':>9s} {'ratio':>6s}  worst point")
    ratios = []
    for spec in args.models.split(","):
        torch.manual_seed(0)
        model = build(spec)
        x = torch.randn(args.batch, 3, args.size, args.size)
        start = time.perf_counter()
        measured = measured_step_peak(model, x)
        cost = mbcost.analyze(model, inputs=tuple(x.shape), mode="train", optimizer="sgd")
        estimate = cost.train_peak_memory_bytes - cost.weight_bytes - cost.buffer_bytes
        ratio = estimate / measured
        ratios.append(ratio)
        print(f"{spec:34s} {estimate / MB:8.1f}M {cost.train_peak_activation_bytes / MB:7.1f}M "
              f"{cost.train_grad_bytes / MB:8.1f}M {measured / MB:8.1f}M {ratio:6.3f}  {cost.train_peak_op}"
              f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    worst = max(ratios, key=lambda r: abs(r - 1))
    print(f"worst ratio {worst:.3f}; within 10%: {sum(abs(r - 1) <= 0.10 for r in ratios)} of {len(ratios)}")


if __name__ == "__main__":
    main()
