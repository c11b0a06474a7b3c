"""Defaults of model inference that front ends show before any model loads (no torch here)."""
PRECISIONS = ("fp32", "bf16", "auto")
DEFAULT_BATCH_SIZE = 16  # measured: 64 is slower on CPU (allocator, cache); see benchmarks/tagging.py
