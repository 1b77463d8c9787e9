"""The one seeded train/val split, so ``train`` and ``eval`` agree on what was held out."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def split_items(items: Sequence[T], *, val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """``(train, val)``: a seeded shuffle of ``items`` sorted by ``str`` first, so the split depends
    only on the item names, not on the order a folder listing returned them.

    At least one item goes to val when ``val_fraction > 0`` and there are two or more items.
    """
    ordered = sorted(items, key=str)
    if val_fraction <= 0 or len(ordered) < 2:
        return list(ordered), []
    rng = random.Random(seed)
    shuffled = ordered[:]
    rng.shuffle(shuffled)
    n_val = min(len(shuffled) - 1, max(1, round(len(shuffled) * val_fraction)))
    val = sorted(shuffled[:n_val], key=str)
    train = sorted(shuffled[n_val:], key=str)
    return train, val
