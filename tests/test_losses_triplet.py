import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rbl.losses import TripletLoss, pairwise_distance

from loops import random_batch, triplet_semihard_loop


def _grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    depth=st.integers(1, 5),
    n=st.integers(1, 16),
    margin=st.sampled_from([0.0, 0.2, 1.0]),
    distance=st.sampled_from(["cosine", "euclidean"]),
    ties=st.booleans(),
    incomplete=st.booleans(),
)
def test_triplet_loss_and_gradient_match_loop(seed, depth, n, margin, distance, ties, incomplete):
    x, labels = random_batch(seed, depth, n, ties=ties, incomplete=incomplete)
    fast = TripletLoss(margin=margin, distance=distance)(x, labels)
    keep = labels[:, -1] >= 0
    dist = pairwise_distance(x[keep], distance)
    slow = triplet_semihard_loop(dist, labels[keep, -1], margin)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(_grad(fast, x), _grad(slow, x))


def test_triplet_hand_case():
    # Points on a line, euclidean, margin 0.5. Classes: A = {0, 1}, B = {1.5, 4}.
    x = torch.tensor([[0.0], [1.0], [1.5], [4.0]], dtype=torch.float64)
    labels = torch.tensor([[0], [0], [1], [1]])
    # (0,1): d=1, negatives 1.5 and 4 are both farther, nearest 1.5 -> max(0, 1-1.5+0.5) = 0
    # (1,0): d=1, negatives at 0.5 and 3; farther: 3 -> max(0, 1-3+0.5) = 0
    # (2,3): d=2.5, negatives at 1.5 and 0.5; none farther, hardest 1.5 -> 2.5-1.5+0.5 = 1.5
    # (3,2): d=2.5, negatives at 4 and 3; farther: 3 (nearest) and 4 -> 2.5-3+0.5 = 0
    loss = TripletLoss(margin=0.5, distance="euclidean")(x, labels)
    assert loss.item() == pytest.approx(1.5 / 4)


def test_anchor_without_negatives_uses_zero_like_tfa():
    x = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    loss = TripletLoss(margin=0.2, distance="euclidean")(x, torch.tensor([[3], [3]]))
    assert loss.item() == pytest.approx(2.2)


def test_unknown_fine_labels_are_left_out_and_no_positive_gives_zero():
    x = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([[0, 0], [0, -1], [0, 1], [1, -1]])
    loss = TripletLoss()(x, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)
    x2, labels2 = random_batch(4, 2, 10, incomplete=True)
    keep = labels2[:, -1] >= 0
    torch.testing.assert_close(TripletLoss()(x2, labels2), TripletLoss()(x2[keep], labels2[keep]))


def test_bad_distance_is_refused():
    with pytest.raises(ValueError, match="distance"):
        TripletLoss(distance="manhattan")
