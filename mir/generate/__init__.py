"""Generation: new pieces sampled from a learned token model, conditioned on retrieved neighbours.

- :func:`train_generator` learns a codebook of beat segments and a small Transformer from a library;
- :func:`generate` retrieves neighbours of the seeds, samples a token sequence under constraints,
  renders it from the neighbours' audio and writes a provenance JSON beside it.
"""
from .piece import GenerateResult, describe_provenance, find_provenance, generate, provenance_path
from .sample import Constraints
from .train import train_generator

__all__ = ["generate", "train_generator", "find_provenance", "describe_provenance", "provenance_path", "GenerateResult", "Constraints"]
