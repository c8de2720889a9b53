import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rbl.losses.quadruplet as quadruplet_module
from rbl.losses import QuadrupletLoss, pairwise_distance

from loops import quadruplet_loss_loop, random_batch


def _grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    depth=st.integers(2, 5),
    n=st.integers(2, 11),
    margin=st.sampled_from([0.0, 0.2, 0.7]),
    per_level=st.booleans(),
    distance=st.sampled_from(["cosine", "euclidean"]),
    ties=st.booleans(),
    incomplete=st.booleans(),
)
def test_quadruplet_loss_and_gradient_match_loop(seed, depth, n, margin, per_level, distance, ties, incomplete):
    x, labels = random_batch(seed, depth, n, ties=ties, incomplete=incomplete)
    margins = [margin + 0.1 * k for k in range(depth)] if per_level else [margin] * depth
    fast = QuadrupletLoss(margins=margins if per_level else margin, distance=distance)(x, labels)
    slow = quadruplet_loss_loop(pairwise_distance(x, distance), labels, margins)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(_grad(fast, x), _grad(slow, x))


def test_chunked_anchors_give_the_same_loss(monkeypatch):
    x, labels = random_batch(11, 3, 20)
    whole = QuadrupletLoss()(x, labels)
    monkeypatch.setattr(quadruplet_module, "CHUNK_ELEMENTS", 1)  # one anchor per chunk
    torch.testing.assert_close(QuadrupletLoss()(x, labels), whole)


def test_quadruplet_hand_case():
    # Points on a line, euclidean. a and p share a leaf, s is a sibling leaf, n another root.
    labels = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 2]])
    x = torch.tensor([[0.0], [1.0], [0.5], [3.0]], dtype=torch.float64)
    # Only a and p anchor a full tuple (s and n have no same-leaf partner): 2 quadruplets.
    # anchor a: d(a,p)=1, d(a,s)=0.5, d(a,n)=3 -> max(0, 1-0.5+0.2) + max(0, 0.5-3+0.3) = 0.7
    # anchor p: d(p,a)=1, d(p,s)=0.5, d(p,n)=2 -> 0.7 + max(0, 0.5-2+0.3) = 0.7
    loss = QuadrupletLoss(margins=(0.2, 0.3), distance="euclidean")(x, labels)
    assert loss.item() == pytest.approx(0.7)


def test_quadruplet_counts_every_combination():
    # Anchors 0, 1, 2 share a leaf; 3 is their sibling leaf; 4, 5 another root. Only anchors 0-2
    # have all three ranks: 2 positives x 1 semi-positive x 2 negatives = 4 tuples each, 12 in all.
    labels = torch.tensor([[0, 0], [0, 0], [0, 0], [0, 1], [1, 2], [1, 2]])
    x = torch.tensor([[0.0], [0.1], [0.2], [1.0], [5.0], [0.9]], dtype=torch.float64)
    # Margins 0: first terms vanish (positives nearer than the semi-positive); the second term is
    # active for negative 5 only, d(a,s) - d(a,5) = 0.1 for every anchor, counted once per positive.
    loss = QuadrupletLoss(margins=0.0, distance="euclidean")(x, labels)
    assert loss.item() == pytest.approx(3 * 2 * 0.1 / 12)


def test_one_level_is_the_all_triplets_loss():
    x, labels = random_batch(3, 1, 9, incomplete=False)
    d = pairwise_distance(x, "cosine")
    fine = labels[:, 0]
    terms = [
        torch.relu(d[a, p] - d[a, n] + 0.2)
        for a in range(9)
        for p in range(9)
        for n in range(9)
        if p != a and fine[p] == fine[a] and fine[n] != fine[a]
    ]
    expected = torch.stack(terms).mean() if terms else d.sum() * 0
    torch.testing.assert_close(QuadrupletLoss()(x, labels), expected)


def test_no_valid_quadruplet_gives_zero_with_a_gradient_path():
    # No rank-0 pair (every sample its own leaf): no tuple at all.
    labels = torch.tensor([[0, 0], [0, 1], [1, 2], [1, 3]])
    x = torch.randn(4, 3, requires_grad=True)
    loss = QuadrupletLoss()(x, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)


def test_margins_must_match_the_depth_and_distance_must_be_known():
    x, labels = random_batch(0, 3, 6)
    with pytest.raises(ValueError, match="margins"):
        QuadrupletLoss(margins=(0.2, 0.2))(x, labels)
    with pytest.raises(ValueError, match="distance"):
        QuadrupletLoss(distance="manhattan")
