import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rbl.errors import InputError
from rbl.taxonomy import Taxonomy, shuffle_leaves, tree_distance

from loops import tree_distance_loop


def small() -> Taxonomy:
    frame = pd.DataFrame({"family": ["A", "A", "B", "B"], "kind": ["a1", "a2", "b1", "shared"]})
    return Taxonomy.from_frame(frame)


def test_encode_codes_and_incomplete_labels():
    tax = small()
    codes = tax.encode([tax.resolve("a2"), tax.resolve("B"), tax.resolve("B/b1")])
    assert codes.tolist() == [[0, 1], [1, -1], [1, 2]]


def test_tree_distance_ranks_by_hand():
    labels = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 2], [1, -1]])
    d = tree_distance(labels, labels)
    assert d[0, 1] == 0  # same leaf
    assert d[0, 2] == 2  # same parent
    assert d[0, 3] == 4  # different roots
    assert d[0, 4] == 4  # incomplete, but the roots differ: decided
    assert d[3, 4] == -1  # same root, fine level unknown: undecided
    assert d[4, 4] == -1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(2, 12), st.integers(0, 10**6))
def test_tree_distance_matches_loop(depth, n, seed):
    rng = np.random.default_rng(seed)
    # Path-consistent codes: a node's code at each level encodes its whole prefix (binary tree).
    digits = rng.integers(0, 2, size=(n, depth))
    paths = [tuple(int("".join(map(str, row[: k + 1])), 2) for k in range(depth)) for row in digits]
    labels = np.array(paths)
    cut = rng.integers(0, depth + 1, size=n)  # incomplete labels: levels >= cut unknown
    labels = np.where(np.arange(depth)[None, :] < np.maximum(cut, 1)[:, None], labels, -1)
    got = tree_distance(torch.tensor(labels), torch.tensor(labels)).numpy()
    want = [[tree_distance_loop(list(a), list(b)) for b in labels] for a in labels]
    assert got.tolist() == want


def test_names_repeating_under_parents_need_paths():
    frame = pd.DataFrame({"family": ["A", "B"], "kind": ["x", "x"]})
    tax = Taxonomy.from_frame(frame)
    with pytest.raises(KeyError, match="several nodes"):
        tax.resolve("x")
    assert tax.resolve("B/x") == ("B", "x")


def test_unknown_label_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean 'a1'"):
        small().resolve("a11")


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"family": ["A", ""], "kind": ["a", "b"]}), "line 3: level 'family' is empty"),
        (pd.DataFrame({"family": ["A", "A"], "kind": ["a", "a"]}), "line 3: duplicate of line 2"),
        (pd.DataFrame({"family": []}), "no rows"),
    ],
)
def test_bad_taxonomy_names_the_row(frame, message):
    with pytest.raises(InputError, match=message):
        Taxonomy.from_frame(frame, source="tax.csv")


def test_shuffled_hierarchy_keeps_shape_and_moves_whole_classes():
    frame = pd.DataFrame({"family": list("AAABBBCCC"), "kind": [f"k{i}" for i in range(9)]})
    tax = Taxonomy.from_frame(frame)
    leaves = tax.leaf_codes()
    labels = np.repeat(leaves, 3, axis=0)
    labels = np.vstack([labels, [[1, -1]]])  # an incomplete label
    out = shuffle_leaves(labels, leaves, np.random.default_rng(0))
    assert (out[-1] == -1).all()
    # Every clip of a fine class lands in the same new slot; slots are the real leaf rows.
    for k in range(9):
        rows = out[:-1][labels[:-1, 1] == k]
        assert (rows == rows[0]).all() and any((rows[0] == leaf).all() for leaf in leaves)
    # Same shape: each parent still has three children.
    _, counts = np.unique(np.unique(out[:-1], axis=0)[:, 0], return_counts=True)
    assert counts.tolist() == [3, 3, 3]
    # And it really moves classes across parents for some seed.
    assert (out[:-1, 0] != labels[:-1, 0]).any()
