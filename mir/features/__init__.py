"""Audio features: log-mel spectrograms (numpy, torch, streaming) and track descriptors.

Functions take arrays (decoding lives in :mod:`mir.audio`) and keyword-only parameters whose ``None``
default means the value in ``get_config().analysis``.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

# names load on first use (PEP 562): ``mir.features.confidence`` needs neither librosa nor torch
_WHERE = {
    **dict.fromkeys(("TrackAnalyzer", "describe", "describe_with_logmel", "key", "key_templates", "loudness",
                     "tempo"), "descriptors"),
    **dict.fromkeys(("LogMel", "LogMelStream", "log_mel", "mel_filterbank"), "logmel"),
}

if TYPE_CHECKING:
    from .descriptors import TrackAnalyzer, describe, describe_with_logmel, key, key_templates, loudness, tempo
    from .logmel import LogMel, LogMelStream, log_mel, mel_filterbank


__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = [
    "mel_filterbank", "log_mel", "LogMel", "LogMelStream",
    "tempo", "key", "key_templates", "loudness", "describe", "describe_with_logmel", "TrackAnalyzer",
]
