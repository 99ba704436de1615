"""`distill bench`: measurements on their own, outside a run or an export.

``train`` (training throughput: distill's full step against the bare step, and the data path)
and ``latency`` (batch-1 latency and batch-N throughput of an ONNX file, checkpoint or timm
model, timed by the same sweep as `distill export`). Both are reached through `distill_cli.api`
(`bench_train`, `bench_latency`); the modules are imported lazily because each pulls in torch,
timm and ONNX Runtime.
"""
