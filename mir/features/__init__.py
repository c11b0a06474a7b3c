"""Audio features: log-mel spectrograms (numpy, torch, streaming) and track descriptors.

Functions take arrays (decoding lives in :mod:`mir.audio`) and keyword-only parameters whose ``None``
default means the value in ``get_config().analysis``.
"""
from .descriptors import TrackAnalyzer, describe, describe_with_logmel, key, key_templates, loudness, tempo
from .logmel import LogMel, LogMelStream, log_mel, mel_filterbank

__all__ = [
    "mel_filterbank", "log_mel", "LogMel", "LogMelStream",
    "tempo", "key", "key_templates", "loudness", "describe", "describe_with_logmel", "TrackAnalyzer",
]
