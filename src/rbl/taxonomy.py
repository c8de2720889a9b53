"""Label taxonomies of any depth: validation, label resolution, integer codes and tree distances.

A taxonomy is a table with one column per level, coarsest first, and one row per leaf. A node is
identified by its path from the root (a name may repeat under different parents). Labels are
encoded as an (N, L) integer matrix, one column per level, -1 where a level is unknown (an
incomplete label names an inner node).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rbl.errors import InputError

if TYPE_CHECKING:
    import torch

PATH_SEP = "/"
UNDECIDED = -1
# Names a level cannot take: the manifest's own columns, which sit beside one column per level
# (a level 'group' would replace the recording groups), and the metrics' level over the whole tree.
RESERVED_LEVELS = ("file", "path", "sha256", "label", "group", "split", "all")


CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL


def control_character(text: str) -> str | None:
    """The first control character (line break, carriage return, tab, ...) in a name, shown escaped.

    CSV writers leave a lone carriage return unquoted, so a name holding one would not survive the
    manifest; such names are refused where they enter (the annotations and the taxonomy).
    """
    found = CONTROL.search(text)
    return None if found is None else repr(found.group())[1:-1]


@dataclass(frozen=True)
class Taxonomy:
    """A validated label tree: level names (coarsest first) and the root-to-leaf path of every leaf."""

    levels: tuple[str, ...]
    leaves: tuple[tuple[str, ...], ...]
    _codes: tuple[dict[tuple[str, ...], int], ...] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, list[tuple[str, ...]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = []
        for depth in range(1, len(self.levels) + 1):
            prefixes = sorted({leaf[:depth] for leaf in self.leaves})
            codes.append({p: i for i, p in enumerate(prefixes)})
        by_name: dict[str, list[tuple[str, ...]]] = {}
        for level_codes in codes:
            for prefix in level_codes:
                by_name.setdefault(prefix[-1], []).append(prefix)
        object.__setattr__(self, "_codes", tuple(codes))
        object.__setattr__(self, "_by_name", by_name)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = "taxonomy.csv") -> Taxonomy:
        """Validate a taxonomy table (strings, one row per leaf) and build the tree."""
        if frame.shape[1] == 0:
            raise InputError(f"{source}: no columns; give one column per taxonomy level, coarsest first")
        if len(frame) == 0:
            raise InputError(f"{source}: no rows; give one row per leaf class")
        levels = tuple(str(c).strip() for c in frame.columns)
        for i, name in enumerate(levels):
            if not name or name.startswith("Unnamed:"):
                raise InputError(f"{source}: column {i + 1} has no name; name every level in the header")
        for name in levels:
            if name.lower() in RESERVED_LEVELS:
                raise InputError(
                    f"{source}: level '{name}' is a reserved name (the manifest's columns and the "
                    f"metrics use {', '.join(RESERVED_LEVELS)}); rename that column of the header, "
                    f"e.g. to '{name}_level'"
                )
            if (bad := control_character(name)) is not None:
                raise InputError(f"{source}: level name {name!r} holds the control character '{bad}'; remove it")
        if len(set(levels)) != len(levels):
            raise InputError(f"{source}: level names repeat in the header {list(levels)}")
        leaves: list[tuple[str, ...]] = []
        seen: dict[tuple[str, ...], int] = {}
        for row, values in enumerate(frame.itertuples(index=False), start=2):
            path = tuple(str(v).strip() for v in values)
            for level, name in zip(levels, path):
                if not name or name.lower() == "nan":
                    raise InputError(
                        f"{source} line {row}: level '{level}' is empty; every leaf needs a name at every level"
                    )
                if (bad := control_character(name)) is not None:
                    raise InputError(
                        f"{source} line {row}: name {name!r} holds the control character '{bad}' "
                        "(a line break or the like); remove it"
                    )
                if PATH_SEP in name:
                    raise InputError(
                        f"{source} line {row}: name '{name}' contains '{PATH_SEP}', which separates path labels; "
                        "rename it"
                    )
            if path in seen:
                raise InputError(
                    f"{source} line {row}: duplicate of line {seen[path]} ({PATH_SEP.join(path)}); remove one"
                )
            seen[path] = row
            leaves.append(path)
        return cls(levels, tuple(leaves))

    @property
    def depth(self) -> int:
        return len(self.levels)

    def nodes(self, level: int) -> list[tuple[str, ...]]:
        """The node paths at a level (0 = coarsest), in code order."""
        return list(self._codes[level])

    def resolve(self, label: str) -> tuple[str, ...]:
        """The node path a label names: a node name, or a path 'a/b' from the root. Raises KeyError with a hint."""
        label = label.strip()
        if PATH_SEP in label:
            path = tuple(part.strip() for part in label.split(PATH_SEP))
            if len(path) <= self.depth and path in self._codes[len(path) - 1]:
                return path
            raise KeyError(f"path '{label}' is not a node of the taxonomy")
        matches = self._by_name.get(label, [])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            options = ", ".join(PATH_SEP.join(m) for m in matches)
            raise KeyError(f"'{label}' names several nodes ({options}); give the label as a path")
        close = difflib.get_close_matches(label, list(self._by_name), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"'{label}' is not a node of the taxonomy{hint}")

    def encode(self, paths: list[tuple[str, ...]]) -> np.ndarray:
        """(N, L) int64 codes of node paths; levels finer than a path's node are -1."""
        out = np.full((len(paths), self.depth), UNDECIDED, dtype=np.int64)
        for i, path in enumerate(paths):
            for level in range(len(path)):
                out[i, level] = self._codes[level][path[: level + 1]]
        return out

    def leaf_codes(self) -> np.ndarray:
        """(K, L) code rows of the leaves; row k is the leaf whose finest code is k."""
        return self.encode(self.nodes(self.depth - 1))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.leaves), columns=list(self.levels))


def tree_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Tree distance between every row of `a` (N, L) and of `b` (M, L): the pair ranks.

    0 for the same leaf, 2 for leaves sharing a parent, ..., 2L for different roots; -1 where an
    incomplete label leaves the distance undecided (no known level differs, but one is unknown).
    """
    import torch  # here, so stages that only read tables start without loading torch

    depth = a.shape[1]
    known = (a[:, None, :] >= 0) & (b[None, :, :] >= 0)
    differ = known & (a[:, None, :] != b[None, :, :])
    first_diff = differ.to(torch.uint8).argmax(dim=-1)
    decided_same = known.all(dim=-1)
    zero = torch.zeros((), dtype=torch.long, device=a.device)
    undecided = torch.full((), UNDECIDED, dtype=torch.long, device=a.device)
    return torch.where(differ.any(dim=-1), 2 * (depth - first_diff), torch.where(decided_same, zero, undecided))


def shuffle_leaves(labels: np.ndarray, leaf_codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels under a random hierarchy of the same shape: fine classes moved to random leaf slots.

    `leaf_codes` (K, L) holds the code row of every leaf, row k for finest code k. Each fine class
    takes the place (and so the ancestors) of another, drawn by a random permutation, so every
    parent keeps its number of children (the paper's RbL_RdmHierarchy control). A clip whose fine
    level is unknown carries no information under the shuffled tree: its row becomes all -1.
    """
    perm = rng.permutation(len(leaf_codes))
    out = np.full_like(labels, UNDECIDED)
    known = labels[:, -1] >= 0
    out[known] = leaf_codes[perm[labels[known, -1]]]
    return out
