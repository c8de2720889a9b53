import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from helpers import rank_loss_loop
from rbl.losses import RankBasedLoss, pairwise_distance


def random_batch(seed: int, depth: int, n: int, dim: int = 4, ties: bool = True, incomplete: bool = True):
    """Labels of a random tree of the given depth (branching 1-3), with duplicates and unknown levels."""
    rng = np.random.default_rng(seed)
    branching = rng.integers(1, 4, size=depth)
    digits = np.stack([rng.integers(0, b, size=n) for b in branching], axis=1)
    labels = np.zeros((n, depth), dtype=np.int64)
    for level in range(depth):
        # Code = index of the prefix: unique per path.
        prefix = [tuple(row[: level + 1]) for row in digits]
        index = {p: k for k, p in enumerate(sorted(set(prefix)))}
        labels[:, level] = [index[p] for p in prefix]
    if incomplete:
        cut = rng.integers(1, depth + 1, size=n)
        cut[rng.random(n) < 0.7] = depth
        labels = np.where(np.arange(depth)[None, :] < cut[:, None], labels, -1)
    x = rng.normal(size=(n, dim))
    if ties:  # duplicated embeddings give exactly tied distances
        dup = rng.random(n) < 0.3
        x[dup] = x[0]
    return torch.tensor(x, dtype=torch.float64, requires_grad=True), torch.tensor(labels)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), depth=st.integers(2, 5), n=st.integers(2, 14),
       target=st.sampled_from(["edge", "reference"]), distance=st.sampled_from(["cosine", "euclidean"]))
def test_rank_loss_and_gradient_match_loop(seed, depth, n, target, distance):
    x, labels = random_batch(seed, depth, n)
    fast = RankBasedLoss(target=target, distance=distance)(x, labels)
    (grad_fast,) = torch.autograd.grad(fast, x)
    x2 = x.detach().clone().requires_grad_(True)
    slow = rank_loss_loop(pairwise_distance(x2, distance), labels, target)
    (grad_slow,) = torch.autograd.grad(slow, x2, allow_unused=True)
    if grad_slow is None:
        grad_slow = torch.zeros_like(x2)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(grad_fast, grad_slow)


def test_rank_loss_hand_case():
    # Two leaves under one root: pair ranks 0 (same leaf) and 2 (siblings).
    labels = torch.tensor([[0, 0], [0, 0], [0, 1]])
    # Cosine distances: d01 = 1 (rank 0), d02 = 0 (rank 2), d12 = 1 - cos(90deg) = 1 (rank 2).
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    # Sorted: d02=0 (pos 0), d01=1 (pos 1), d12=1 (pos 2). Rank 0 owns [0,1): d01 at pos 1 is late,
    # target sorted[0] = 0 -> (1-0)^2. Rank 2 owns [1,3): d02 at pos 0 is early, target sorted[1] = 1.
    loss = RankBasedLoss()(x, labels)
    assert loss.item() == pytest.approx((1.0 + 1.0) / 3)


def test_perfect_embedding_has_zero_loss():
    labels = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 2], [1, 2]])
    x = torch.tensor([[0.0, 0.0], [0.0, 0.01], [0.5, 0.0], [5.0, 5.0], [5.0, 5.01]], dtype=torch.float64)
    assert RankBasedLoss(distance="euclidean")(x, labels).item() == 0.0


def test_undecided_pairs_only_give_zero():
    labels = torch.tensor([[0, -1], [0, -1]])
    x = torch.randn(2, 3, requires_grad=True)
    loss = RankBasedLoss()(x, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)


@pytest.mark.parametrize("distance, metric", [("cosine", "cosine"), ("euclidean", "euclidean")])
def test_pairwise_distance_matches_scipy(distance, metric):
    x = np.random.default_rng(0).normal(size=(7, 5))
    got = pairwise_distance(torch.tensor(x), distance).numpy()
    np.testing.assert_allclose(got, cdist(x, x, metric=metric), atol=1e-7)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="target"):
        RankBasedLoss(target="nearest")
    with pytest.raises(ValueError, match="distance"):
        RankBasedLoss(distance="manhattan")
