import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from rbl.losses import RankBasedLoss, pairwise_distance
from rbl.losses._rank_cpu import Workspace, loss_and_grad, tree_distance_np
from rbl.metrics import mean_silhouette
from rbl.taxonomy import tree_distance

from loops import random_batch, rank_loss_loop

TARGETS = st.sampled_from([("gap", 0.0), ("gap", 0.1), ("gap", 0.5), ("edge", 0.0), ("reference", 0.0)])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    depth=st.integers(2, 5),
    n=st.integers(2, 14),
    target=TARGETS,
    distance=st.sampled_from(["cosine", "euclidean"]),
)
def test_rank_loss_and_gradient_match_loop(seed, depth, n, target, distance):
    (target, margin) = target
    x, labels = random_batch(seed, depth, n)
    fast = RankBasedLoss(target=target, distance=distance, margin=margin)(x, labels)
    (grad_fast,) = torch.autograd.grad(fast, x)
    x2 = x.detach().clone().requires_grad_(True)
    slow = rank_loss_loop(pairwise_distance(x2, distance), labels, target, margin)
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
    loss = RankBasedLoss(target="edge")(x, labels)
    assert loss.item() == pytest.approx((1.0 + 1.0) / 3)


def test_gap_target_hand_case():
    # As above. Over their mean 2/3 the distances are d01 = 1.5, d02 = 0, d12 = 1.5. The boundary
    # after rank 0's block (position 1) is (sorted[0] + sorted[1]) / 2 = 0.75; with margin 0.2,
    # rank 0 must lie below 0.65 and rank 2 above 0.85: d01 costs (1.5 - 0.65)^2, d02 (0.85 - 0)^2,
    # d12 nothing. Each rank weighs 1/2, spread over its pairs.
    labels = torch.tensor([[0, 0], [0, 0], [0, 1]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    loss = RankBasedLoss(target="gap", margin=0.2)(x, labels)
    assert loss.item() == pytest.approx((0.85**2 / 1 + 0.85**2 / 2) / 2)
    # The gap target does not change with the scale of the embedding (euclidean: distances scale).
    scaled = RankBasedLoss(target="gap", distance="euclidean", margin=0.2)
    x, labels = random_batch(4, 2, 12, ties=False)
    torch.testing.assert_close(scaled(x, labels), scaled(7.0 * x, labels))


@pytest.mark.parametrize("collapse", ["batch", "coarse class"])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_gap_target_pushes_collapsed_embeddings_apart(collapse, distance):
    # The failure seen on real audio: a whole batch, or one coarse class, on (nearly) one point.
    # The edge target calls that perfect; the gap target gives a positive loss whose gradient
    # spreads the points. (Rows exactly equal are a stationary point of every function of their
    # cosine distances, so the rows are within 1e-3 of each other.)
    # Coarse class 1 is in order (two tight fine classes 60 degrees apart); class 0 sits at the
    # antipode, or the whole batch on one point.
    rng = np.random.default_rng(0)
    labels = torch.tensor([[c, 2 * c + f] for c in range(2) for f in range(2) for _ in range(3)])
    centres = np.array([[0.0, -1.0, 0.0]] * 6 + [[0.0, 1.0, 0.0]] * 3 + [[0.0, 0.5, 0.75**0.5]] * 3)
    squeeze = np.ones(12, bool) if collapse == "batch" else (labels[:, 0] == 0).numpy()
    centres[squeeze] = centres[0]
    x = centres + 1e-3 * rng.normal(size=(12, 3))
    x = torch.tensor(x, requires_grad=True)
    assert RankBasedLoss(target="edge", distance=distance)(x, labels).item() < 1e-5
    gap = RankBasedLoss(target="gap", distance=distance, margin=0.2)
    loss = gap(x, labels)
    assert loss.item() > 1e-3
    (grad,) = torch.autograd.grad(loss, x)
    assert grad[squeeze].abs().max() > 0
    # A step along the gradient, small against the collapsed rows' 1e-3 radius, lowers the loss and
    # pulls their classes apart: their silhouette rises. (The gap target does not change with the
    # scale of the embedding, so it separates classes relative to their spread.)
    step = (x - 1e-5 * grad / grad.norm()).detach()
    assert gap(step, labels).item() < loss.item()
    assert mean_silhouette(step[squeeze], labels[squeeze]) > mean_silhouette(x.detach()[squeeze], labels[squeeze])


def test_gap_target_is_zero_only_with_the_gap():
    # Blocks in order: zero loss when consecutive blocks are a margin apart, positive when closer.
    labels = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 2]])
    # Distances: rank 0: 0.1; rank 2: 0.9, 1.0; rank 4: 3.0, 2.9, 2.0 (mean 1.65). The gap between
    # the rank 0 and rank 2 blocks is 0.8 = 0.8 / 1.65 mean distances.
    x = torch.tensor([[0.0], [0.1], [1.0], [3.0]], dtype=torch.float64)
    gap = 0.8 / ((0.1 + 0.9 + 1.0 + 3.0 + 2.9 + 2.0) / 6)
    loss = RankBasedLoss(target="gap", distance="euclidean", margin=gap - 0.01)
    assert loss(x, labels).item() == 0.0
    assert RankBasedLoss(target="gap", distance="euclidean", margin=gap + 0.01)(x, labels).item() > 0.0


def test_perfect_embedding_has_zero_loss():
    labels = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 2], [1, 2]])
    x = torch.tensor([[0.0, 0.0], [0.0, 0.01], [5.0, 0.0], [0.0, 10.0], [0.01, 10.0]], dtype=torch.float64)
    for target in ("gap", "edge"):  # gap: blocks 0.69 mean distances apart (the default margin: 0.6)
        assert RankBasedLoss(distance="euclidean", target=target)(x, labels).item() == 0.0


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
    with pytest.raises(ValueError, match="margin"):
        RankBasedLoss(margin=-0.1)
    with pytest.raises(ValueError, match="distance"):
        RankBasedLoss(distance="manhattan")


def _grads(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    depth=st.integers(2, 5),
    n=st.integers(2, 14),
    target=TARGETS,
    distance=st.sampled_from(["cosine", "euclidean"]),
)
def test_generic_torch_path_matches_loop(seed, depth, n, target, distance):
    # The device-generic path (used off CPU and for the reference target) on its own.
    (target, margin) = target
    x, labels = random_batch(seed, depth, n)
    fast = RankBasedLoss(target=target, distance=distance, margin=margin).forward_torch(x, labels)
    slow = rank_loss_loop(pairwise_distance(x, distance), labels, target, margin)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(_grads(fast, x), _grads(slow, x))


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    depth=st.integers(1, 5),
    n=st.integers(2, 40),
    distance=st.sampled_from(["cosine", "euclidean"]),
    ties=st.booleans(),
    incomplete=st.booleans(),
    buckets=st.sampled_from([1, 2, 3, 7, 4096]),
    target=st.sampled_from([("gap", 0.0), ("gap", 0.2), ("edge", 0.0)]),
)
def test_cpu_kernel_selection_paths_match_loop(seed, depth, n, distance, ties, incomplete, buckets, target):
    # Few buckets force the bucketed selection (with ties filling a bucket, or all values in one);
    # 4096 the quickselect on a copy. One workspace is reused across sizes, as in training.
    x, labels = random_batch(seed, depth, n, ties=ties, incomplete=incomplete)
    workspace = Workspace()
    (target, margin) = target
    loss_and_grad(
        np.ones((50, 2)), np.zeros((50, 1), dtype=np.int64), distance, True, workspace, target=target, margin=margin
    )
    loss, grad = loss_and_grad(
        x.detach().numpy(), labels.numpy(), distance, True, workspace, buckets, target=target, margin=margin
    )
    slow = rank_loss_loop(pairwise_distance(x, distance), labels, target, margin)
    torch.testing.assert_close(torch.tensor(loss, dtype=torch.float64), slow.detach())
    torch.testing.assert_close(torch.from_numpy(grad), _grads(slow, x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("incomplete", [False, True])
@pytest.mark.parametrize("target", ["gap", "edge"])
def test_cpu_kernel_matches_torch_path_on_large_batches(dtype, distance, incomplete, target):
    # The kernel computes in float64 whatever the input dtype, so the reference is the torch path
    # in float64 (in float32 it is itself off by up to 5e-4 here: the squared-norm expansion of
    # the euclidean distance cancels catastrophically for the tied, duplicated embeddings).
    x, labels = random_batch(7, 3, 200, dim=5, incomplete=incomplete)  # > 4 x 4096 pairs: bucketed
    loss = RankBasedLoss(distance=distance, target=target, margin=0.2)
    exact = loss.forward_torch(x, labels)
    x_in = x.detach().to(dtype).requires_grad_(True)
    fast = loss(x_in, labels)
    assert fast.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(fast, exact.to(dtype), **tol)
    if dtype == torch.float64:
        torch.testing.assert_close(_grads(fast, x_in), _grads(exact, x))
    else:  # the input itself is rounded to float32: compare with the exact gradient at that input
        x_rounded = x_in.detach().double().requires_grad_(True)
        at_input = loss.forward_torch(x_rounded, labels)
        torch.testing.assert_close(_grads(fast, x_in), _grads(at_input, x_rounded).float(), **tol)


def test_cpu_kernel_without_grad_gives_the_same_value():
    x, labels = random_batch(3, 2, 12)
    with torch.no_grad():
        value = RankBasedLoss()(x, labels)
    assert value.requires_grad is False
    torch.testing.assert_close(value, RankBasedLoss()(x, labels).detach())


def test_cpu_kernel_gradient_scales_with_upstream_gradient():
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
    np.testing.assert_array_equal(tree_distance_np(labels), expected)


def test_cpu_kernel_compares_wide_codes_exactly():
    labels = torch.tensor([[2**40, 5, 2**30], [2**40, 5, 2**30], [2**40, 6, 1], [0, 5, 2**30]] * 3)
    np.testing.assert_array_equal(tree_distance_np(labels.numpy()), tree_distance(labels, labels).numpy())
    x = torch.randn(len(labels), 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(RankBasedLoss()(x, labels), RankBasedLoss().forward_torch(x, labels))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_cpu_kernel_refuses_non_finite_embeddings(bad):
    x, labels = random_batch(2, 2, 300)  # large enough for the bucketed selection
    x = x.detach().clone()
    x[5, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        RankBasedLoss()(x, labels)


def test_cpu_kernel_refuses_overflowing_distances():
    # Squared euclidean distances of huge embeddings overflow: refused, never bucketed as garbage.
    x, labels = random_batch(3, 2, 300, incomplete=False)
    x = x.detach().clone()
    x[0] = 1e200
    with pytest.raises(ValueError, match="overflow"):
        RankBasedLoss(distance="euclidean")(x, labels)


def test_cpu_kernel_refuses_mismatched_labels():
    with pytest.raises(ValueError, match="labels must be"):
        RankBasedLoss()(torch.randn(4, 3), torch.zeros(5, 2, dtype=torch.long))


def test_cpu_gap_and_edge_targets_take_the_compiled_kernel():
    # The speed of RbL on CPU rests on this dispatch (see benchmarks/README.md).
    x, labels = random_batch(1, 2, 8)
    for target in ("gap", "edge"):
        assert type(RankBasedLoss(target=target)(x, labels).grad_fn).__name__ == "_BlockRankLossBackward"
    assert type(RankBasedLoss(target="reference")(x, labels).grad_fn).__name__ != "_BlockRankLossBackward"
