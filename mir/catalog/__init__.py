"""The catalogue: a library directory of tracks known by content hash, and their cached analysis."""
from .analysis import AnalyzeReport, analyze
from .library import Library, ScanReport
from .stages import stage_versions

__all__ = ["Library", "ScanReport", "AnalyzeReport", "analyze", "stage_versions"]
