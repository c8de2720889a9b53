import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import rbl.losses._groups as groups_module
import rbl.losses._rank_cpu as rank_cpu
from loops import random_batch, rank_loss_loop
from rbl.losses import RankBasedLoss, pairwise_distance
from rbl.losses._groups import label_groups, tree_distance_np
from rbl.taxonomy import tree_distance


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


def _grads(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), depth=st.integers(2, 5), n=st.integers(2, 14),
       target=st.sampled_from(["edge", "reference"]), distance=st.sampled_from(["cosine", "euclidean"]))
def test_generic_torch_path_matches_loop(seed, depth, n, target, distance):
    # The device-generic path (used off CPU and for the reference target) on its own.
    x, labels = random_batch(seed, depth, n)
    fast = RankBasedLoss(target=target, distance=distance).forward_torch(x, labels)
    slow = rank_loss_loop(pairwise_distance(x, distance), labels, target)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(_grads(fast, x), _grads(slow, x))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), depth=st.integers(1, 5), n=st.integers(2, 16),
       distance=st.sampled_from(["cosine", "euclidean"]), ties=st.booleans(), incomplete=st.booleans(),
       memo_up_to=st.sampled_from([0, 64]))
def test_numpy_path_grouped_and_selecting_matches_loop(seed, depth, n, distance, ties, incomplete, memo_up_to):
    # Force the large-batch branches (samples grouped by label, order statistics by partition).
    x, labels = random_batch(seed, depth, n, ties=ties, incomplete=incomplete)
    with (_patched(groups_module, "GROUP_ABOVE", 0), _patched(rank_cpu, "SORT_UP_TO", 0),
          _patched(groups_module, "MEMO_UP_TO", memo_up_to)):
        fast = RankBasedLoss(distance=distance)(x, labels)
        grad_fast = _grads(fast, x)
    slow = rank_loss_loop(pairwise_distance(x, distance), labels, "edge")
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(grad_fast, _grads(slow, x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("incomplete", [False, True])
def test_numpy_path_matches_torch_path_on_large_batches(dtype, distance, incomplete):
    x, labels = random_batch(7, 3, 150, dim=5, incomplete=incomplete)
    x = x.detach().to(dtype).requires_grad_(True)
    loss = RankBasedLoss(distance=distance)
    fast, generic = loss(x, labels), loss.forward_torch(x, labels)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(fast, generic, **tol)
    torch.testing.assert_close(_grads(fast, x), _grads(generic, x), **tol)
    assert fast.dtype == dtype


def test_numpy_path_without_grad_gives_the_same_value():
    x, labels = random_batch(3, 2, 12)
    with torch.no_grad():
        value = RankBasedLoss()(x, labels)
    assert value.requires_grad is False
    torch.testing.assert_close(value, RankBasedLoss()(x, labels).detach())


def test_numpy_path_gradient_scales_with_upstream_gradient():
    x, labels = random_batch(5, 2, 10, ties=False)
    (g1,) = torch.autograd.grad(RankBasedLoss()(x, labels), x)
    (g3,) = torch.autograd.grad(3.0 * RankBasedLoss()(x, labels), x)
    torch.testing.assert_close(g3, 3.0 * g1)


label_matrices = st.integers(1, 6).flatmap(
    lambda depth: st.lists(st.lists(st.integers(-2, 4), min_size=depth, max_size=depth), min_size=1, max_size=12)
)


@settings(max_examples=100, deadline=None)
@given(rows=label_matrices)
def test_tree_distance_np_matches_taxonomy(rows):
    # Any label matrix, unknown levels anywhere (not only as a suffix), codes repeated across levels.
    labels = np.array(rows, dtype=np.int64)
    expected = tree_distance(torch.tensor(labels), torch.tensor(labels)).numpy()
    np.testing.assert_array_equal(tree_distance_np(labels, labels), expected)
    np.testing.assert_array_equal(tree_distance_np(labels, labels[::-1]), expected[:, ::-1])


@settings(max_examples=40, deadline=None)
@given(rows=label_matrices, group_above=st.sampled_from([0, 1000]))
def test_label_groups_expand_to_the_pair_ranks(rows, group_above):
    labels = np.array(rows, dtype=np.int64)
    with _patched(groups_module, "GROUP_ABOVE", group_above):
        groups = label_groups(labels)
    order = np.arange(len(labels)) if groups.order is None else groups.order
    assert sorted(order.tolist()) == list(range(len(labels)))
    ranks = tree_distance(torch.tensor(labels), torch.tensor(labels)).numpy()[np.ix_(order, order)]
    depth = labels.shape[1]
    off_diagonal = ~np.eye(len(labels), dtype=bool)  # a sample paired with itself is no pair
    expanded = groups.expand(groups.level)[off_diagonal]
    np.testing.assert_array_equal(expanded, np.where(ranks < 0, depth + 1, ranks // 2)[off_diagonal])
    upper = ranks[np.triu_indices(len(labels), 1)]
    expected_pairs = [(upper == 2 * k).sum() for k in range(depth + 1)] + [(upper < 0).sum()]
    np.testing.assert_array_equal(groups.pairs, expected_pairs)


def test_fast_path_counts_wide_codes_exactly():
    # Codes too wide for the mixed-radix row key fall back to unique rows.
    labels = np.array([[2**40, 5, 2**30], [2**40, 5, 2**30], [2**40, 6, 1], [0, 5, 2**30]] * 3)
    with _patched(groups_module, "GROUP_ABOVE", 0):
        groups = label_groups(labels)
    assert sorted(groups.sizes.tolist()) == [3, 3, 6]
    x = torch.randn(len(labels), 3, dtype=torch.float64, requires_grad=True)
    with _patched(groups_module, "GROUP_ABOVE", 0):
        fast = RankBasedLoss()(x, torch.tensor(labels))
    torch.testing.assert_close(fast, RankBasedLoss().forward_torch(x, torch.tensor(labels)))


class _patched:
    """Set a module attribute for the duration of a with-block (hypothesis tests cannot take monkeypatch)."""

    def __init__(self, module, name, value):
        self.module, self.name, self.value = module, name, value

    def __enter__(self):
        self.saved = getattr(self.module, self.name)
        setattr(self.module, self.name, self.value)

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.saved)


def test_cpu_edge_target_takes_the_numpy_path():
    # The speed of RbL on CPU rests on this dispatch (see benchmarks/README.md).
    x, labels = random_batch(1, 2, 8)
    assert type(RankBasedLoss()(x, labels).grad_fn).__name__ == "_EdgeRankLossBackward"
    assert type(RankBasedLoss(target="reference")(x, labels).grad_fn).__name__ != "_EdgeRankLossBackward"
