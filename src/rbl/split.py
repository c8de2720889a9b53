"""Train / val / test_seen / test_unseen assignment.

test_unseen holds whole fine classes that training never sees: `unseen_per_parent` leaves are
drawn under every parent that has more children than that. The remaining clips are divided by
group (a recording or source stays within one split), stratified by fine class, towards the
requested fractions. An explicit split column, when given, is used as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rbl.data import SPLITS
from rbl.errors import InputError


def choose_unseen(leaves: list[tuple[str, ...]], per_parent: int, rng: np.random.Generator) -> set[tuple[str, ...]]:
    """Draw `per_parent` leaves under each parent with more than that many children."""
    by_parent: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for leaf in sorted(leaves):
        by_parent.setdefault(leaf[:-1], []).append(leaf)
    unseen: set[tuple[str, ...]] = set()
    for parent in sorted(by_parent):
        children = by_parent[parent]
        if len(children) > per_parent:
            picks = rng.choice(len(children), size=per_parent, replace=False)
            unseen.update(children[i] for i in sorted(picks))
    return unseen


def assign_groups(group: np.ndarray, stratum: np.ndarray, fractions: dict[str, float],
                  rng: np.random.Generator) -> np.ndarray:
    """Split names per row: whole groups go to the split furthest below its target, per stratum."""
    names = list(fractions)
    target = np.array([fractions[n] for n in names], dtype=float)
    target = target / target.sum()
    out = np.empty(len(group), dtype=object)
    frame = pd.DataFrame({"group": group, "stratum": stratum})
    # A group belongs to the stratum most of its rows have, so it is placed once.
    group_stratum = frame.groupby("group")["stratum"].agg(lambda s: s.value_counts().index[0])
    sizes = frame.groupby("group").size()
    for name in sorted(group_stratum.unique()):
        groups = np.array(sorted(group_stratum.index[group_stratum == name]))
        groups = groups[rng.permutation(len(groups))]
        filled = np.zeros(len(names))
        total = sizes[groups].sum()
        for g in groups:
            deficit = target * total - filled
            k = int(np.argmax(deficit))
            filled[k] += sizes[g]
            out[frame["group"].to_numpy() == g] = names[k]
    return out


def make_splits(manifest: pd.DataFrame, levels: list[str], unseen_per_parent: int,
                fractions: dict[str, float], seed: int) -> pd.DataFrame:
    """A (file, split) table for the manifest's rows."""
    if (manifest["split"] != "").all():
        return manifest[["file", "split"]].copy()
    bad = [k for k in fractions if k not in SPLITS or k == "test_unseen"]
    if bad:
        raise InputError(f"split.fractions: unknown split(s) {bad}; use train, val and test_seen")
    rng = np.random.default_rng(seed)
    finest = levels[-1]
    complete = manifest[finest] != ""
    leaves = sorted({tuple(r) for r in manifest.loc[complete, levels].itertuples(index=False)})
    unseen = choose_unseen(leaves, unseen_per_parent, rng) if unseen_per_parent > 0 else set()
    is_unseen = np.array([tuple(r) in unseen for r in manifest[levels].itertuples(index=False)])
    split = np.empty(len(manifest), dtype=object)
    split[is_unseen] = "test_unseen"
    seen = manifest[~is_unseen]
    # Stratify by the deepest known node, so incomplete labels spread like the others.
    stratum = seen[levels].apply(lambda r: "/".join(v for v in r if v), axis=1).to_numpy()
    split[~is_unseen] = assign_groups(seen["group"].to_numpy(), stratum, fractions, rng)
    out = pd.DataFrame({"file": manifest["file"].to_numpy(), "split": split})
    for name in ("train", "val"):
        if not (out["split"] == name).any():
            raise InputError(f"split: no clip landed in '{name}'; add data, lower split.unseen_per_parent "
                             "or change split.fractions")
    return out
