"""Library values (numpy scalars and arrays, NaN, pandas NA) as plain JSON values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def plain(value):
    """``value`` with numpy types turned into Python ones and NaN / NA / NaT into ``None``, recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT or value is None:
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
