"""The speed baseline benchmarks/authors_rbl.py is the authors' published RbL: it must compute
exactly what `RankBasedLoss(target="reference")` computes, value and gradient."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from rbl.losses import RankBasedLoss
from rbl.taxonomy import tree_distance

from authors_rbl import (
    RankBasedLossHierarchicalLabelsEmbeddings,
    SingleLayerHypersphereConstraint,
    authors_batch_loss,
    compute_pair_gt_tree_distance,
    label_strings,
    pre_compute_rank_map,
    train_RbL,
)


def random_labels(gen: torch.Generator, n: int, depth: int, branching: int = 3) -> torch.Tensor:
    """(n, depth) codes, coarsest first, of leaves drawn uniformly from a full tree."""
    leaf = torch.randint(0, branching**depth, (n,), generator=gen)
    return torch.stack([leaf // branching ** (depth - 1 - k) for k in range(depth)], dim=1)


def both_losses(z: torch.Tensor, labels: torch.Tensor, distance: str):
    """Value and gradient (with respect to z, before the model's L2 normalisation) of both."""
    z1 = z.clone().requires_grad_(True)
    theirs = authors_batch_loss(z1, label_strings(labels), 2 * labels.shape[1], distance)
    theirs.backward()
    z2 = z.clone().requires_grad_(True)
    ours = RankBasedLoss(target="reference", distance=distance)(F.normalize(z2, dim=1), labels)
    ours.backward()
    return theirs, z1.grad, ours, z2.grad


# float64: the two compute the same operations on the same numbers; they differ only in the
# rounding of our second L2 normalisation (of unit vectors) and of our euclidean distance
# (|a|^2 + |b|^2 - 2ab instead of the sum of squared differences), a few ulps of values of order 1,
# so 1e-10 is loose. float32: the same rounding at float32 precision.
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("depth", [2, 3])
def test_value_and_gradient_equal_the_reference_target(depth, distance, dtype, tol):
    gen = torch.Generator().manual_seed(depth)
    for n in (5, 7, 12, 12, 12, 40):  # the authors' code needs pairs >= ranks + 1 (see below)
        labels = random_labels(gen, n, depth)
        z = torch.randn(n, 3, generator=gen).to(dtype)
        theirs, grad_theirs, ours, grad_ours = both_losses(z, labels, distance)
        assert theirs.item() > 0  # a misplaced pair in every batch: the comparison is not vacuous
        torch.testing.assert_close(theirs, ours, rtol=tol, atol=tol)
        torch.testing.assert_close(grad_theirs, grad_ours, rtol=tol, atol=tol)


def test_too_few_pairs_fail_as_in_the_published_code():
    # 4 clips make 6 pairs, fewer than the 7 per-rank targets of 3 levels: the published code
    # indexes past its target list. Our reference target clamps the index instead.
    labels = torch.tensor([[0, 0, 0], [1, 3, 9], [2, 6, 18], [2, 7, 21]])
    with pytest.raises(IndexError):
        authors_batch_loss(torch.randn(4, 3), label_strings(labels), 6)


def test_gradient_flows_through_the_target_distance():
    # With the target detached the gradient would differ: the comparison above can fail.
    gen = torch.Generator().manual_seed(5)
    labels = random_labels(gen, 12, 2)
    z = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    _, grad_theirs, _, _ = both_losses(z, labels, "cosine")
    z3 = z.clone().requires_grad_(True)
    x = F.normalize(z3, dim=1)
    n = len(x)
    i, j = torch.triu_indices(n, n, offset=1)
    d = (1 - x @ x.T)[i, j]
    r = tree_distance(labels, labels)[i, j]
    position = torch.argsort(torch.argsort(d))
    counts = torch.bincount(r, minlength=5)
    end = torch.cumsum(counts, 0)
    misplaced = (position < (end - counts)[r]) | (position >= end[r])
    detached = (misplaced * (d - torch.sort(d).values.detach()[r]) ** 2).mean()
    detached.backward()
    assert not torch.allclose(z3.grad, grad_theirs)


@pytest.mark.parametrize("depth", [2, 3])
def test_rank_map_is_the_tree_distance(depth):
    gen = torch.Generator().manual_seed(10 + depth)
    labels = random_labels(gen, 20, depth)
    rank_map, pair_rank = pre_compute_rank_map(2 * depth, label_strings(labels))
    i, j = torch.triu_indices(20, 20, offset=1)
    expected = tree_distance(labels, labels)[i, j]
    assert torch.equal(pair_rank, expected)
    assert rank_map.shape == (2 * depth + 1, len(i))
    assert torch.equal(rank_map.sum(0), torch.ones(len(i)))
    assert torch.equal(rank_map.argmax(0), expected)
    assert set(expected.tolist()) == set(range(0, 2 * depth + 1, 2))  # every rank occurs


def test_label_strings_and_the_fixed_three_level_branch():
    assert label_strings(torch.tensor([[2, 7], [0, 1]])) == ["7_2", "1_0"]
    assert label_strings(torch.tensor([[1, 4, 13]])) == ["13_4_1"]
    # Different roots: the published loop indexed past the end here (IndexError); now 6.
    assert compute_pair_gt_tree_distance("13_4_1", "0_0_0", 6) == 6
    assert compute_pair_gt_tree_distance("13_4_1", "12_4_1", 6) == 2
    assert compute_pair_gt_tree_distance("13_4_1", "10_3_1", 6) == 4
    with pytest.raises(ValueError, match="2 or 3"):
        compute_pair_gt_tree_distance("a_b_c_d", "a_b_c_d", 8)
    with pytest.raises(ValueError, match="unknown"):
        label_strings(torch.tensor([[0, -1]]))


def test_training_loop_runs_and_keeps_the_best_checkpoint(tmp_path):
    gen = np.random.default_rng(0)
    features = tmp_path / "features"
    features.mkdir()
    labels = label_strings(random_labels(torch.Generator().manual_seed(0), 48, 2))
    names = [f"clip{k}.wav" for k in range(48)]
    for name in names:
        np.save(features / name.replace(".wav", ".npy"), gen.normal(size=16).astype(np.float32))
    table = pd.DataFrame({"wavfilename": names, "hierarchical_labels": labels})
    configs = {"EMBEDDINGS_SIZE": 16, "output_EMBEDDINGS_SIZE": 3, "LR": 1e-2, "BATCH_SIZE": 12}
    torch.manual_seed(0)
    model = SingleLayerHypersphereConstraint(configs)
    train = torch.utils.data.DataLoader(
        RankBasedLossHierarchicalLabelsEmbeddings(table[:36], str(features)),
        batch_size=12,
        shuffle=False,
        drop_last=False,
    )
    val = torch.utils.data.DataLoader(
        RankBasedLossHierarchicalLabelsEmbeddings(table[36:], str(features)),
        batch_size=12,
        shuffle=True,
        drop_last=False,
    )
    before = model.linear.weight.detach().clone()
    best = train_RbL(model, train, val, str(tmp_path), 10, False, 3, configs, distance="cosine", number_of_ranks=4)
    assert not torch.equal(before, model.linear.weight)
    saved = torch.load(best, weights_only=False)  # val_loss is a NumPy float
    assert list(tmp_path.glob("Checkpoint_*.pt")) == [tmp_path / best.rsplit("/", 1)[1]]
    assert 0 <= saved["epoch"] < 3
