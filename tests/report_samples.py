"""Synthetic measurement records (the JSON Lines contract of ``mbcost bench --save``) for report tests.

Two machines: a CPU run and a CUDA run, with model, layer, conv and peak records whose times
follow a simple roofline (time = max(FLOPs / peak, bytes / bandwidth) / efficiency), so the
figures have plausible shapes. Nothing here measures anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mbcost.bench.records import ConvRecord, Env, LayerRecord, ModelRecord, PeakRecord, Record
from mbcost.cost.analyze import analyze
from mbcost.cost.conv import compare_conv

CPU = {"device": "cpu", "device_name": "Intel Xeon Gold 6354", "dtype": "float32", "threads": 2,
       "peak_gflops": 180.0, "peak_gbps": 20.0, "efficiency": 0.35}
GPU = {"device": "cuda", "device_name": "NVIDIA H200", "dtype": "float16", "threads": 1,
       "peak_gflops": 400000.0, "peak_gbps": 4000.0, "efficiency": 0.25}


def env(run: dict[str, Any], *, timestamp: str = "2026-01-02T03:04:05Z") -> Env:
    cuda = run["device"] == "cuda"
    return Env(mbcost="0.1.0", torch="2.13.0", device_name=run["device_name"], cpu="Intel Xeon Gold 6354",
               threads=run["threads"], cuda="12.8" if cuda else None, cudnn="91000" if cuda else None,
               cudnn_benchmark=False if cuda else None, platform="Linux-6.1-x86_64", python="3.11.7",
               timestamp=timestamp)


def common(run: dict[str, Any], *, label: str | None = None, median_ms: float = 1.0, batch: int = 1,
           wide_spread: bool = False) -> dict[str, Any]:
    """The keywords every record type takes (``Record``'s fields), for a run."""
    return {"device": run["device"], "device_name": run["device_name"], "dtype": run["dtype"], "batch": batch,
            "threads": run["threads"], "channels_last": False, "compile": False, "median_ms": median_ms,
            "iqr_ms": median_ms * 0.03, "runs": 50, "wide_spread": wide_spread, "times_ms": (median_ms,) * 3,
            "env": env(run), "label": label if label is not None else f"{run['device_name']} {run['dtype']}"}


def _time_ms(run: dict[str, Any], flops: float, nbytes: float) -> float:
    return max(flops / (run["peak_gflops"] * 1e9), nbytes / (run["peak_gbps"] * 1e9)) / run["efficiency"] * 1e3


def typed_records_for(run: dict[str, Any], models: tuple[str, ...] = ("v1", "v2", "vgg16"), *,
                      label: str | None = None, model_label: dict[str, str] | None = None) -> list[Record]:
    """model + layer (first model) + conv + peak records of one run, built with the record types that
    ``mbcost bench`` writes (so a sample cannot drift from the contract)."""
    out: list[Record] = [PeakRecord(**common(run, label=label), peak_gflops=run["peak_gflops"],
                                    peak_gbps=run["peak_gbps"], matmul_n=1024, copy_bytes=1 << 28,
                                    copy_median_ms=1.0, copy_iqr_ms=0.01)]
    for n, name in enumerate(models):
        cost = analyze(name, 224)
        ms = sum(_time_ms(run, lc.flops + lc.elementwise_ops, lc.bytes_moved) for lc in cost.layers)
        shown = (model_label or {}).get(name, cost.label)
        out.append(ModelRecord(**common(run, label=label, median_ms=ms, wide_spread=name == "vgg16"), model=shown,
                               input=(224, 224), params=cost.params, macs=cost.macs, flops=cost.flops,
                               throughput_ips=1e3 / ms, achieved_gflops=cost.flops / ms / 1e6))
        if n > 0:
            continue
        for lc in cost.layers:
            t = _time_ms(run, lc.flops + lc.elementwise_ops, lc.bytes_moved)
            achieved = (lc.flops + lc.elementwise_ops) / t / 1e6
            bound = min(run["peak_gflops"], lc.arithmetic_intensity * run["peak_gbps"])
            out.append(LayerRecord(**common(run, label=label, median_ms=t), model=shown, input=(224, 224),
                                   layer=lc.name, module_type=lc.module_type, category=lc.category, ops=(lc.op,),
                                   macs=lc.macs, flops=lc.flops, elementwise_ops=lc.elementwise_ops,
                                   bytes_moved=lc.bytes_moved, arithmetic_intensity=lc.arithmetic_intensity,
                                   time_share=t / ms, mac_share=lc.macs / cost.macs, achieved_gflops=achieved,
                                   roofline_bound_gflops=bound, bound_fraction=achieved / bound if bound else None))
    for n in (32, 128, 512):
        c = compare_conv(n, n, 3, 14)
        std = _time_ms(run, c.standard.flops, sum(lc.bytes_moved for lc in c.standard.layers))
        sep = sum(_time_ms(run, lc.flops, lc.bytes_moved) for lc in c.separable.layers) * 1.8
        out.append(ConvRecord(**common(run, label=label, median_ms=sep), cin=n, cout=n, k=3, size=(14, 14), stride=1,
                              standard_ms=std, separable_ms=sep, standard_iqr_ms=std * 0.03, standard_runs=50,
                              standard_wide_spread=False, standard_times_ms=(std,) * 3,
                              standard_macs=c.standard.macs, separable_macs=c.separable.macs,
                              measured_speedup=std / sep, macs_ratio=float(c.macs_ratio),
                              formula_ratio=float(c.formula_ratio)))
    return out


def records_for(run: dict[str, Any], models: tuple[str, ...] = ("v1", "v2", "vgg16"), *,
                label: str | None = None, model_label: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """``typed_records_for`` as the JSON objects a results file holds."""
    return [r.to_dict() for r in typed_records_for(run, models, label=label, model_label=model_label)]


def write_jsonl(path: Path, records: list[dict[str, Any]], *, truncated_tail: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if truncated_tail:
        text += '{"kind": "model", "device": "cpu", "median_'
    path.write_text(text, encoding="utf-8")
    return path


def hostile_net():  # noqa: ANN201
    """A user's model whose module names carry HTML (``report_samples:hostile_net``)."""
    from torch import nn

    net = nn.Sequential()
    net.add_module("<img src=x onerror=alert(1)>", nn.Conv2d(3, 8, 3, padding=1))
    net.add_module("</script>", nn.ReLU())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(8, 10))
    return net
