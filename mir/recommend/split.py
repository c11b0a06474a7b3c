"""Per-user temporal split: each user's last interactions are held out (pure, index space)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ParameterError


def temporal_split(interactions, holdout: float = 0.2, *, min_events: int = 2):
    """``(train, relevant)``: ``train`` keeps each user's earlier events; ``relevant[u]`` is the sorted
    array of items user ``u`` played in their held-out (last) events and never in train.

    Per user with ``n >= min_events`` events, the last ``max(1, round(holdout * n))`` events (by
    timestamp, input order breaking ties) are held out, always leaving at least one in train.
    Users with fewer events stay whole in train. Users whose held-out items were all played in
    train too have no entry in ``relevant``.
    """
    if not 0.0 < holdout < 1.0:
        raise ParameterError(f"holdout must be a fraction in (0, 1), got {holdout!r}")
    if min_events < 2:
        raise ParameterError(f"min_events must be >= 2 (one event stays in train), got {min_events}")
    X = interactions
    n = len(X)
    order = np.lexsort((np.arange(n), X.timestamp, X.user_idx))
    u_sorted = X.user_idx[order]
    counts = np.bincount(X.user_idx, minlength=X.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(n) - starts[u_sorted]  # 0-based position in the user's timeline
    from_end = counts[u_sorted] - 1 - pos
    n_hold = np.where(counts >= min_events, np.maximum(1, np.floor(holdout * counts + 0.5)), 0).astype(np.int64)
    n_hold = np.minimum(n_hold, np.maximum(counts - 1, 0))
    hold_sorted = from_end < n_hold[u_sorted]
    hold = np.zeros(n, bool)
    hold[order] = hold_sorted
    train = X.subset(~hold)
    held = pd.DataFrame({"u": X.user_idx[hold], "i": X.item_idx[hold]}).drop_duplicates()
    before = pd.DataFrame({"u": train.user_idx, "i": train.item_idx}).drop_duplicates()
    new = held.merge(before, on=["u", "i"], how="left", indicator=True)
    new = new[new["_merge"] == "left_only"].sort_values(["u", "i"])
    relevant = {int(u): g.to_numpy(np.int64) for u, g in new.groupby("u")["i"]}
    return train, relevant
