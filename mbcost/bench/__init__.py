"""Measured latency next to the analytic cost.

``timer`` wraps ``torch.utils.benchmark.Timer`` and holds the statistics; ``devices`` resolves and
validates devices, dtypes, threads and memory; ``records`` and ``store`` define the JSON Lines
records and write them as they are measured; ``model_bench``, ``layers``, ``sweep`` and
``roofline`` measure models, per-layer times, standard vs separable convolutions and the
device's attainable peaks; ``runtimes`` holds one adapter per runtime a network can be measured on
(eager, torch.compile, ONNX Runtime, OpenVINO, ExecuTorch; float32 and int8); ``matrix`` puts the
runtimes side by side (median, speed-up against eager, speed-ups between models). Nothing here imports
torch at import time.
"""

__all__ = ["devices", "errors", "layers", "matrix", "memory", "model_bench", "records", "roofline", "runtimes", "store",
           "sweep", "timer"]
