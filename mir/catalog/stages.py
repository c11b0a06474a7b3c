"""Names and versions of the analysis stages the catalogue caches."""
from __future__ import annotations

from ..config import AnalysisConfig, get_config

DESCRIPTORS_CODE_VERSION = "2"  # 2: rhythm (tempogram ratio) and chroma profile  # bump when the descriptor code changes its results
BEATS_CODE_VERSION = "1"  # beats, bar positions and segment features (mir.features.beats)
DESCRIPTOR_COLUMNS = ["duration", "tempo", "rhythm", "key", "mode", "key_confidence", "chroma", "loudness"]


def stage_versions(cfg: AnalysisConfig | None = None) -> dict[str, str]:
    """Current version of each analysis stage: code version + fingerprint of the feature settings."""
    fp = (cfg or get_config().analysis).fingerprint()
    return {"descriptors": f"{DESCRIPTORS_CODE_VERSION}-{fp}", "logmel": fp, "beats": f"{BEATS_CODE_VERSION}-{fp}"}
