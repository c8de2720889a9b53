"""Train / val / test_seen / test_unseen assignment.

test_unseen holds whole fine classes that training never sees: `unseen_per_parent` leaves are
drawn under every parent that has more children than that. The remaining clips are divided by
group (a recording or source stays within one split), stratified by fine class, towards the
requested fractions. An explicit split column, when given, is used as it is.

Clips whose audio could not be decoded (listed in skipped.csv by extraction with
features.on_error: skip) are assigned like the others, so the split of every other clip does not
depend on which files decoded, and then marked `skipped`: no stage trains on, normalises with or
evaluates them. train and val must keep at least one clip each, or the stage stops naming the
config keys to change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rbl.data import SKIPPED, SPLITS
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


def _check_not_empty(out: pd.DataFrame, lost: dict[str, int], explicit: bool, unseen_per_parent: int) -> None:
    """train and val need clips: say which split is empty, why, and which keys change it."""
    n = len(out)
    n_skipped = int((out["split"] == SKIPPED).sum())
    n_unseen = int((out["split"] == "test_unseen").sum())
    for name in ("train", "val"):
        if (out["split"] == name).any():
            continue
        if explicit:
            left = f" after leaving out {n_skipped} skipped clip(s) (see skipped.csv)" if n_skipped else ""
            raise InputError(f"split: the annotations' split column leaves no clip in '{name}'{left}; training "
                             "needs train and val clips: fill the split column so both have clips, or leave "
                             "the column out to split by split.fractions")
        causes = [f"{n_unseen} of {n} clip(s) are held out as test_unseen by split.unseen_per_parent="
                  f"{unseen_per_parent}"]
        if n_skipped:
            causes.append(f"{n_skipped} clip(s) were skipped as undecodable (see skipped.csv), "
                          f"{lost.get(name, 0)} of them from '{name}'")
        raise InputError(f"split: no clip landed in '{name}' ({'; '.join(causes)}); add data, lower "
                         f"split.unseen_per_parent or raise split.fractions.{name}")


def make_splits(manifest: pd.DataFrame, levels: list[str], unseen_per_parent: int,
                fractions: dict[str, float], seed: int,
                skipped: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """A (file, split) table for the manifest's rows; files in `skipped` get the split 'skipped'."""
    unknown = sorted(set(skipped) - set(manifest["file"]))
    if unknown:
        raise InputError(f"split: skipped clip(s) {unknown[:3]} are not in the manifest; the skipped list is "
                         "from another run: rerun feature extraction")
    explicit = bool(len(manifest)) and bool((manifest["split"] != "").all())
    if explicit:
        out = manifest[["file", "split"]].copy().reset_index(drop=True)
    else:
        out = _assign(manifest, levels, unseen_per_parent, fractions, seed)
    left_out = out["file"].isin(skipped)
    lost = out.loc[left_out, "split"].value_counts().to_dict()
    out.loc[left_out, "split"] = SKIPPED
    _check_not_empty(out, lost, explicit, unseen_per_parent)
    return out


def _assign(manifest: pd.DataFrame, levels: list[str], unseen_per_parent: int,
            fractions: dict[str, float], seed: int) -> pd.DataFrame:
    bad = [k for k in fractions if k not in SPLITS or k == "test_unseen"]
    if bad:
        raise InputError(f"split.fractions: unknown split(s) {bad}; use train, val and test_seen")
    rng = np.random.default_rng(seed)
    finest = levels[-1]
    complete = manifest[finest] != ""
    leaves = sorted({tuple(r) for r in manifest.loc[complete, levels].itertuples(index=False)})
    unseen = choose_unseen(leaves, unseen_per_parent, rng) if unseen_per_parent > 0 else set()
    is_unseen = np.array([tuple(r) in unseen for r in manifest[levels].itertuples(index=False)], dtype=bool)
    split = np.empty(len(manifest), dtype=object)
    split[is_unseen] = "test_unseen"
    seen = manifest[~is_unseen]
    if len(seen):
        # Stratify by the deepest known node, so incomplete labels spread like the others.
        stratum = seen[levels].apply(lambda r: "/".join(v for v in r if v), axis=1).to_numpy()
        split[~is_unseen] = assign_groups(seen["group"].to_numpy(), stratum, fractions, rng)
    return pd.DataFrame({"file": manifest["file"].to_numpy(), "split": split})
