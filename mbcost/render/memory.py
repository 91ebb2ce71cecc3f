"""Table, CSV records and JSON of ``mbcost memory`` (``MemorySchedule`` results). Computes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost import units as fmt
from mbcost.render.table import Table

if TYPE_CHECKING:
    from mbcost.cost.schedule import MemorySchedule

#: The claim being checked, quoted with its source.
PAPER = ("paper: Sandler et al. 2018 (MobileNetV2), Table 3, 'max number of channels/memory (in Kb) that needs to "
         "be materialized at each spatial resolution', 16-bit floats: max MobileNetV1 1600K (112x112x64 x 2 B = "
         "1,605,632 B), MobileNetV2 400K (112x112x16 x 2 B = 401,408 B)")
MATERIALIZED = ("materialized: every op output and the model input exist whole; live peak = activation bytes alive "
                "at once, from tensor lifetimes")
STREAMED = ("streamed: each InvertedResidual block, and the stem before the first one, is computed in spatial "
            "slices, so only its input and output exist whole, never its expanded inner tensors (section 'Memory "
            "efficient inference'); live peak estimated as the largest block (or op) input + output, slice buffers "
            "not counted; models without such blocks: same as materialized")
COLUMNS = ("channels: the widest 4-D N x C x H x W tensor held whole at each H x W (pooled 1x1 included), '-' when "
           "none is; max: the largest tensor held whole, as its full shape")
UNITS = ("bytes exact (batch included); kB = bytes / 1000, rounded: decimal, as the paper's figures are "
         "(1,605,632 B = 1606 kB, its '1600K'; in KiB it would be 1568)")


def memory_document(schedules: list[MemorySchedule]) -> dict[str, Any]:
    """The JSON document: ``{"models": [...]}``, one ``MemorySchedule.to_dict()`` per model."""
    return {"models": [s.to_dict() for s in schedules]}


def memory_records(schedules: list[MemorySchedule]) -> list[dict[str, Any]]:
    """One flat row per model and resolution (CSV); the model's totals repeat on each of its rows."""
    rows = []
    for s in schedules:
        totals = {"largest_tensor_bytes": s.largest_tensor_bytes,
                  "streamed_largest_tensor_bytes": s.streamed_largest_tensor_bytes,
                  "peak_activation_bytes": _blank(s.peak_activation_bytes),
                  "streamed_peak_activation_bytes": _blank(s.streamed_peak_activation_bytes)}
        head = {"model": s.label, "dtype": s.dtype, "input": _shape(s.input), "batch": s.batch}
        for r in s.by_resolution or [None]:
            rows.append({**head,
                         "height": "" if r is None else r.size[0], "width": "" if r is None else r.size[1],
                         "max_channels": "" if r is None else r.max_channels, "bytes": "" if r is None else r.bytes,
                         "streamed_max_channels": "" if r is None else r.streamed_max_channels,
                         "streamed_bytes": "" if r is None else r.streamed_bytes,
                         **totals})
    return rows


def memory_table(schedules: list[MemorySchedule]) -> Table:
    """One row per resolution per model, then its largest tensor and live peak, both schedules."""
    rows: list[list[str]] = []
    for s in schedules:
        label = s.label
        for r in s.by_resolution:
            rows.append([label, _shape(r.size), str(r.max_channels), fmt.exact(r.bytes), _kb(r.bytes),
                         str(r.streamed_max_channels) if r.streamed_max_channels else "-",
                         fmt.exact(r.streamed_bytes) if r.streamed_bytes else "-",
                         _kb(r.streamed_bytes) if r.streamed_bytes else "-"])
            label = ""
        rows.append([label, "max", _shape(s.largest_tensor_shape), fmt.exact(s.largest_tensor_bytes),
                     _kb(s.largest_tensor_bytes), _shape(s.streamed_largest_tensor_shape),
                     fmt.exact(s.streamed_largest_tensor_bytes), _kb(s.streamed_largest_tensor_bytes)])
        rows.append(["", "live peak", "", _exact(s.peak_activation_bytes), _kb(s.peak_activation_bytes), "",
                     _exact(s.streamed_peak_activation_bytes), _kb(s.streamed_peak_activation_bytes)])
    first = schedules[0]
    title = (f"mbcost memory: activations held whole, input {_shape(first.input)}, batch {first.batch}, "
             f"{first.dtype}")
    notes = [f"activations at {first.dtype}; the paper assumes 16-bit floats (--dtype float16)",
             MATERIALIZED, STREAMED, COLUMNS, UNITS, PAPER]
    for s in schedules:
        if s.peak_activation_bytes is None:
            notes.append(f"{s.label}: counted on a real CPU forward; no lifetime-based live peak")
    return Table(title=title, columns=["model", "resolution", "channels", "bytes", "kB", "streamed channels",
                                       "streamed bytes", "streamed kB"], rows=rows, notes=notes)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "-"


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1000:.0f}"


def _exact(n: int | None) -> str:
    return "n/a (real run)" if n is None else fmt.exact(n)


def _blank(n: int | None) -> int | str:
    return "" if n is None else n


__all__ = ["memory_document", "memory_records", "memory_table"]
