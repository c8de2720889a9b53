"""Batch samplers: the rank-balanced batches of the paper (any depth, incomplete labels) and random batches."""

import itertools

import numpy as np
import pytest
import torch

from rbl.sampling import REJECTION_ABOVE, BalancedBatches, random_batches
from rbl.taxonomy import tree_distance


def grid_labels(branching: tuple[int, ...], per_leaf: int) -> np.ndarray:
    """Every leaf of a full tree, `per_leaf` clips each; codes unique per node (as level_codes makes them)."""
    leaves = list(itertools.product(*[range(b) for b in branching]))
    rows = []
    for path in leaves:
        codes = [int(np.ravel_multi_index(path[: k + 1], branching[: k + 1])) for k in range(len(path))]
        rows += [codes] * per_leaf
    return np.array(rows, dtype=np.int64)


def test_paper_batches_hold_two_coarse_two_fine_three_clips():
    labels = grid_labels((3, 3), 20)
    sampler = BalancedBatches(labels, 12)
    batches = sampler.epoch(np.random.default_rng(0))
    assert len(batches) == 15  # ceil(180 / 12)
    for batch in batches:
        assert batch.shape == (12,) and len(set(batch.tolist())) == 12  # distinct clips
        rows = labels[batch]
        coarse = np.unique(rows[:, 0])
        assert len(coarse) == 2
        for c in coarse:
            fine, counts = np.unique(rows[rows[:, 0] == c, 1], return_counts=True)
            assert len(fine) == 2 and counts.tolist() == [3, 3]
        ranks = tree_distance(torch.tensor(rows), torch.tensor(rows))
        assert set(ranks[np.triu_indices(12, 1)].tolist()) == {0, 2, 4}  # pairs of every rank


def test_children_and_clips_are_drawn_uniformly():
    labels = grid_labels((3, 3), 6)
    sampler = BalancedBatches(labels, 12)
    rng = np.random.default_rng(1)
    batches = np.concatenate([np.stack(sampler.epoch(rng)) for _ in range(400)])  # 3600 batches
    n = len(batches)
    # Coarse pairs: each of the 3 pairs in a third of the batches.
    pairs = [tuple(np.unique(labels[b, 0])) for b in batches]
    counts = np.array([pairs.count(p) for p in [(0, 1), (0, 2), (1, 2)]])
    assert np.all(np.abs(counts - n / 3) < 5 * np.sqrt(n * (1 / 3) * (2 / 3)))
    # Clips: each clip of a drawn leaf equally likely (every leaf has 6 clips, 3 drawn: p = 1/2).
    drawn = np.bincount(batches.ravel(), minlength=len(labels))
    leaf_draws = {leaf: drawn[labels[:, 1] == leaf] for leaf in range(9)}
    for counts in leaf_draws.values():
        expected = counts.sum() / len(counts)
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_same_seed_same_epoch_and_any_depth():
    labels = grid_labels((2, 3, 2), 4)
    sampler = BalancedBatches(labels, 24)  # 2**3 leaves x 3 clips
    first = sampler.epoch(np.random.default_rng(7))
    again = sampler.epoch(np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    for batch in first:
        rows = labels[batch]
        assert len(batch) == 24 and len(np.unique(rows[:, 0])) == 2 and len(np.unique(rows[:, 2])) == 8
        ranks = tree_distance(torch.tensor(rows), torch.tensor(rows))
        assert set(ranks[np.triu_indices(24, 1)].tolist()) == {0, 2, 4, 6}


def test_incomplete_labels_form_an_unknown_child_and_are_drawn():
    labels = grid_labels((2, 2), 5)
    coarse_only = np.array([[0, -1]] * 4)  # labelled at the coarse level only
    labels = np.concatenate([labels, coarse_only])
    sampler = BalancedBatches(labels, 12)
    rng = np.random.default_rng(0)
    batches = [b for _ in range(50) for b in sampler.epoch(rng)]
    drawn = np.concatenate(batches)
    assert np.isin(np.arange(20, 24), drawn).all()
    # Under coarse class 0 there are three children now: (0, 0), (0, 1) and (0, unknown).
    with_unknown = [b for b in batches if (labels[b, 1] == -1).any()]
    assert with_unknown and all((labels[b, 1] == -1).sum() == 3 for b in with_unknown)  # per_leaf = 12 // 4


def test_single_child_nodes_give_smaller_batches_without_padding():
    labels = np.array([[0, 0]] * 5 + [[1, 1]] * 5 + [[1, 2]] * 5)  # coarse 0 has one child
    sampler = BalancedBatches(labels, 12)
    for batch in sampler.epoch(np.random.default_rng(3)):
        assert (batch >= 0).all()
        assert len(batch) == 9  # 3 clips of (0, 0), 3 of (1, 1), 3 of (1, 2)


def test_small_leaves_draw_with_replacement_large_ones_distinct():
    labels = np.array([[0, 0]] * 2 + [[0, 1]] * (REJECTION_ABOVE + 50) + [[1, 2]] * 3 + [[1, 3]] * 3)
    sampler = BalancedBatches(labels, 12)
    rng = np.random.default_rng(4)
    for _ in range(20):
        for batch in sampler.epoch(rng):
            for leaf in (1, 2, 3):
                clips = batch[labels[batch, 1] == leaf]
                assert len(np.unique(clips)) == len(clips)  # leaves of >= 3 clips: distinct
            small = batch[labels[batch, 1] == 0]
            assert len(small) in (0, 3) and set(small.tolist()) <= {0, 1}  # 2 clips for 3 draws


def test_balanced_batches_refuse_an_empty_training_set():
    with pytest.raises(ValueError, match="training examples"):
        BalancedBatches(np.zeros((0, 2), dtype=np.int64), 12)


def test_random_batches_cover_every_clip_once():
    batches = random_batches(25, 12, np.random.default_rng(0))
    assert [len(b) for b in batches] == [12, 12]  # the last batch of one clip holds no pair: dropped
    batches = random_batches(26, 12, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(26))
