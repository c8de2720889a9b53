"""Train / val / test_seen / test_unseen assignment that does not move when data is added.

Every decision is a hash of (seed, name) alone, so adding clips, groups or classes leaves the
decisions about everything else as they were (docs/ARCHITECTURE.md, "Splits", says exactly what
is and is not stable):

- test_unseen holds whole fine classes that training never sees: under every parent with more
  than `unseen_per_parent` leaves, the `unseen_per_parent` leaves whose draw hash(seed, leaf path)
  is lowest.
- The other clips are placed by group (a recording or source stays within one split; clips with
  identical content, equal sha256, are joined into one group). A group's draw u = hash(seed,
  group) in [0, 1) falls in the interval of one split: train [0, f_train), val [f_train, f_train +
  f_val), test_seen above, with the fractions normalised to sum 1. Within each class (the deepest
  known taxonomy node), the group with the lowest draw always goes to train, and a class with at
  least one group per split also has its highest draw in test_seen and, if no group drew val, the
  middle group whose draw lies nearest the val interval in val. These fill-ins change nothing in a
  class where every split was drawn by some group.

An explicit split column, when given, is used as it is. Identical content under different labels
is refused, and so is identical content put in different splits by an explicit split column.

Clips whose audio could not be decoded (listed in skipped.csv by extraction with
features.on_error: skip) are assigned like the others, so the split of every other clip does not
depend on which files decoded, and then marked `skipped`: no stage trains on, normalises with or
evaluates them. train and val must keep at least one clip each, or the stage stops naming the
config keys to change.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from rbl.data import DRAWN_SPLITS, SKIPPED, UNSEEN
from rbl.errors import InputError

# The order of the draw intervals: train lowest, so a class's lowest draw is a train draw whenever
# any of its groups drew train.
ORDER = DRAWN_SPLITS


def parse_fractions(text: str) -> dict[str, float]:
    """`train=0.6,val=0.2,test_seen=0.2` (the --fractions flag) as {split: fraction}; make_splits checks them."""
    fractions = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            fractions[name.strip()] = float(value)
        except ValueError:
            raise InputError(
                f"--fractions: '{item}' is not name=number (e.g. train=0.6,val=0.2,test_seen=0.2)"
            ) from None
    return fractions


def draw(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from (seed, key) alone, the same on every machine and run.

    hashlib rather than numpy's generator: a generator's numbers depend on how many were drawn
    before, which is what made one added clip move others; Python's hash() is salted per process.
    """
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def choose_unseen(leaves: list[tuple[str, ...]], per_parent: int, seed: int) -> set[tuple[str, ...]]:
    """The `per_parent` leaves of lowest draw under each parent with more than that many children.

    A leaf's draw depends on its path alone, so adding clips never changes the choice, and a new
    leaf changes only its own parent's choice (when its draw is among the lowest there).
    """
    by_parent: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for leaf in sorted(set(leaves)):
        by_parent.setdefault(leaf[:-1], []).append(leaf)
    unseen: set[tuple[str, ...]] = set()
    for children in by_parent.values():
        if len(children) > per_parent:
            ranked = sorted(children, key=lambda leaf: (draw(seed, "leaf\x00" + "/".join(leaf)), leaf))
            unseen.update(ranked[:per_parent])
    return unseen


def content_groups(group: np.ndarray, sha256: np.ndarray) -> np.ndarray:
    """Each row's group after joining groups that share a clip's content (equal sha256).

    The joined group is named after its member group of lowest name; groups with no shared content
    keep their own name. Union-find over group names (a dozen lines; no library needed).
    """
    parent: dict[str, str] = {g: g for g in group}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_group: dict[str, str] = {}
    for g, digest in zip(group, sha256):
        other = first_group.setdefault(digest, g)
        a, b = root(g), root(other)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(g) for g in group], dtype=object)


def check_content_labels(manifest: pd.DataFrame, levels: list[str], source: str) -> None:
    """Identical content (equal sha256) under different labels is an error naming both rows.

    Labels are compared as taxonomy paths, so `a1` and `A/a1` are the same label. Manifest rows
    keep the annotations' order, so the row with index k is annotation line k + 2.
    """
    first: dict[str, int] = {}
    paths = manifest[levels].to_numpy()
    for i, digest in enumerate(manifest["sha256"].to_numpy()):
        j = first.setdefault(digest, i)
        if j != i and tuple(paths[i]) != tuple(paths[j]):
            a, b = manifest.iloc[j], manifest.iloc[i]
            raise InputError(
                f"{source}: '{a['file']}' (annotation line {a.name + 2}, label '{a['label']}') and "
                f"'{b['file']}' (annotation line {b.name + 2}, label '{b['label']}') have identical content "
                f"(sha256 {digest[:12]}...) but different labels; fix the wrong label or remove the copy "
                "from the annotations"
            )


def _check_explicit_content(manifest: pd.DataFrame, source: str) -> None:
    """An explicit split column must not put identical content in two splits (it would leak)."""
    first: dict[str, int] = {}
    split = manifest["split"].to_numpy()
    for i, digest in enumerate(manifest["sha256"].to_numpy()):
        j = first.setdefault(digest, i)
        if split[i] != split[j]:
            a, b = manifest.iloc[j], manifest.iloc[i]
            raise InputError(
                f"{source}: '{a['file']}' (annotation line {a.name + 2}, split '{split[j]}') and "
                f"'{b['file']}' (annotation line {b.name + 2}, split '{split[i]}') have identical content, so "
                "one split would score or select on clips another one holds; put both in one split or "
                "remove the copy"
            )


def place_sorted(u: np.ndarray, fractions: dict[str, float]) -> list[str]:
    """Split names of one class's groups, given their draws sorted ascending.

    Each group takes the split whose interval its draw falls in; then the lowest draw goes to the
    first split, and with at least one group per split the highest draw goes to the last and, if
    no group drew the middle split, the middle group nearest its interval goes there. Every fill-in
    is a no-op when each split was drawn by some group (intervals are in order, so the lowest draw
    is then a first-split draw and the highest a last-split draw).
    """
    names = [n for n in ORDER if fractions.get(n, 0) > 0]
    shares = np.array([fractions[n] for n in names], dtype=float)
    edges = np.cumsum(shares / shares.sum())
    k = np.minimum(np.searchsorted(edges, u, side="right"), len(names) - 1)
    n = len(u)
    k[0] = 0
    if n >= len(names) >= 2:
        k[-1] = len(names) - 1
        if len(names) == 3 and not (k == 1).any():
            lo, hi = edges[0], edges[1]
            gap = np.maximum(lo - u[1:-1], 0) + np.maximum(u[1:-1] - hi, 0)
            k[1 + int(np.argmin(gap))] = 1
    return [names[i] for i in k]


def assign_groups(group: np.ndarray, stratum: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split names per row: every group by its own draw, per stratum (see place_sorted)."""
    frame = pd.DataFrame({"group": group, "stratum": stratum})
    # A group belongs to the stratum most of its rows have (ties: the first in name order).
    group_stratum = frame.groupby("group")["stratum"].agg(
        lambda s: s.value_counts().sort_index().sort_values(ascending=False, kind="stable").index[0]
    )
    u = pd.Series({g: draw(seed, "group\x00" + g) for g in group_stratum.index})
    decided: dict[str, str] = {}
    for _, members in group_stratum.groupby(group_stratum):
        ranked = sorted(members.index, key=lambda g: (u[g], g))
        decided.update(zip(ranked, place_sorted(u[ranked].to_numpy(), fractions)))
    return frame["group"].map(decided).to_numpy(dtype=object)


def _check_not_empty(out: pd.DataFrame, lost: dict[str, int], explicit: bool, unseen_per_parent: int) -> None:
    """train and val need clips: say which split is empty, why, and which keys change it."""
    n = len(out)
    n_skipped = int((out["split"] == SKIPPED).sum())
    n_unseen = int((out["split"] == UNSEEN).sum())
    for name in ("train", "val"):
        if (out["split"] == name).any():
            continue
        if explicit:
            left = f" after leaving out {n_skipped} skipped clip(s) (see skipped.csv)" if n_skipped else ""
            raise InputError(
                f"split: the annotations' split column leaves no clip in '{name}'{left}; training "
                "needs train and val clips: fill the split column so both have clips, or leave "
                "the column out to split by split.fractions"
            )
        causes = [
            f"{n_unseen} of {n} clip(s) are held out as test_unseen by split.unseen_per_parent={unseen_per_parent}"
        ]
        if n_skipped:
            causes.append(
                f"{n_skipped} clip(s) were skipped as undecodable (see skipped.csv), "
                f"{lost.get(name, 0)} of them from '{name}'"
            )
        raise InputError(
            f"split: no clip landed in '{name}' ({'; '.join(causes)}); add data, lower "
            f"split.unseen_per_parent or raise split.fractions.{name}"
        )


def make_splits(
    manifest: pd.DataFrame,
    levels: list[str],
    unseen_per_parent: int,
    fractions: dict[str, float],
    seed: int,
    skipped: set[str] | frozenset[str] = frozenset(),
    source: str = "manifest",
) -> pd.DataFrame:
    """A (file, split) table for the manifest's rows; files in `skipped` get the split 'skipped'.

    `source` names the manifest in error messages.
    """
    manifest = manifest.reset_index(drop=True)  # index k: annotation line k + 2
    if "sha256" not in manifest.columns:
        raise InputError(f"{source}: no 'sha256' column; it is not a manifest written by rbl ingest: rerun ingest")
    unknown = sorted(set(skipped) - set(manifest["file"]))
    if unknown:
        raise InputError(
            f"split: skipped clip(s) {unknown[:3]} are not in the manifest; the skipped list is "
            "from another run: rerun feature extraction"
        )
    # Clips left out as undecodable are used nowhere, and 0-byte files all share one sha256: their
    # content says nothing about their labels.
    used = manifest[~manifest["file"].isin(skipped)]
    check_content_labels(used, levels, source)
    explicit = bool(len(manifest)) and bool((manifest["split"] != "").all())
    if explicit:
        _check_explicit_content(used, source)
        out = manifest[["file", "split"]].copy().reset_index(drop=True)
    else:
        out = _assign(manifest, levels, unseen_per_parent, fractions, seed)
    left_out = out["file"].isin(skipped)
    lost = out.loc[left_out, "split"].value_counts().to_dict()
    out.loc[left_out, "split"] = SKIPPED
    _check_not_empty(out, lost, explicit, unseen_per_parent)
    return out


def _assign(
    manifest: pd.DataFrame, levels: list[str], unseen_per_parent: int, fractions: dict[str, float], seed: int
) -> pd.DataFrame:
    bad = [k for k in fractions if k not in DRAWN_SPLITS]
    if bad:
        raise InputError(f"split.fractions: unknown split(s) {bad}; use {', '.join(DRAWN_SPLITS)}")
    if not any(v > 0 for v in fractions.values()) or any(v < 0 for v in fractions.values()):
        raise InputError(f"split.fractions: {fractions} needs non-negative shares, at least one above 0")
    finest = levels[-1]
    complete = manifest[finest] != ""
    leaves = sorted({tuple(r) for r in manifest.loc[complete, levels].itertuples(index=False)})
    unseen = choose_unseen(leaves, unseen_per_parent, seed) if unseen_per_parent > 0 else set()
    is_unseen = np.array([tuple(r) in unseen for r in manifest[levels].itertuples(index=False)], dtype=bool)
    split = np.empty(len(manifest), dtype=object)
    split[is_unseen] = UNSEEN
    seen = manifest[~is_unseen]
    if len(seen):
        # Stratify by the deepest known node, so incomplete labels spread like the others.
        stratum = seen[levels].apply(lambda r: "/".join(v for v in r if v), axis=1).to_numpy()
        group = content_groups(seen["group"].to_numpy(dtype=object), seen["sha256"].to_numpy(dtype=object))
        split[~is_unseen] = assign_groups(group, stratum, fractions, seed)
    return pd.DataFrame({"file": manifest["file"].to_numpy(), "split": split})
