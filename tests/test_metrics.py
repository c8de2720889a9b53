import math

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_samples, silhouette_score

from rbl.metrics import mean_silhouette, silhouette, silhouette_per_level, silhouette_samples_cosine


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 4, size=40)
    y[0] = 9  # a class of one: scores 0, as scikit-learn
    got = silhouette_samples_cosine(torch.tensor(x), torch.tensor(y), chunk=7).numpy()
    np.testing.assert_allclose(got, silhouette_samples(x, y, metric="cosine"), atol=1e-10)
    value, reason = silhouette(torch.tensor(x), torch.tensor(y))
    assert value == pytest.approx(silhouette_score(x, y, metric="cosine")) and reason == ""


def test_silhouette_hand_case():
    # Two tight, opposite clusters: a = 0, b = 2 for every sample -> silhouette 1.
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    assert silhouette(x, torch.tensor([0, 0, 1, 1]))[0] == pytest.approx(1.0)


def test_unknown_labels_are_left_out_and_undefined_levels_explained():
    x = torch.randn(6, 3)
    labels = torch.tensor([[0, 0], [0, 1], [0, -1], [0, 2], [0, -1], [0, 3]])
    (coarse, why_coarse), (fine, why_fine) = silhouette_per_level(x, labels)
    assert math.isnan(coarse) and "1 class" in why_coarse
    assert math.isnan(fine) and "fewer classes than examples" in why_fine
    assert math.isnan(mean_silhouette(x, labels))


# --- nearest neighbours and kNN ----------------------------------------------------------------

from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors  # noqa: E402

from rbl.metrics import (  # noqa: E402
    choose_k,
    class_paths,
    knn_accuracy,
    knn_accuracy_loo,
    knn_vote,
    lowest_seen_parent,
    map_at_r,
    mistake_severity,
    nearest_neighbours,
    neighbour_labels_per_level,
    paired_tree_distance,
    parent_accuracy,
    tree_distance_spearman,
)
from rbl.taxonomy import tree_distance  # noqa: E402


def _blobs(seed: int, n: int, classes: int, dim: int = 5, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = rng.normal(size=(classes, dim))[y] + spread * rng.normal(size=(n, dim))
    return x, y


@pytest.mark.parametrize("chunk_elems", [7, 1 << 20])
def test_nearest_neighbours_match_sklearn(chunk_elems):
    x, _ = _blobs(0, 60, 3)
    ref, query = x[:40], x[40:]
    got = nearest_neighbours(torch.tensor(query), torch.tensor(ref), 5, chunk_elems=chunk_elems).numpy()
    want = NearestNeighbors(n_neighbors=5, metric="cosine", algorithm="brute").fit(ref).kneighbors(query)[1]
    np.testing.assert_array_equal(got, want)
    # Leave-one-out: the query itself is skipped, and k is capped by what remains.
    loo = nearest_neighbours(
        torch.tensor(ref), torch.tensor(ref), 100, exclude=torch.arange(40), chunk_elems=chunk_elems
    )
    want = NearestNeighbors(n_neighbors=40, metric="cosine", algorithm="brute").fit(ref).kneighbors(ref)[1][:, 1:]
    assert loo.shape == (40, 39)
    np.testing.assert_array_equal(loo.numpy(), want)


def test_knn_vote_majority_and_ties_to_the_nearest():
    votes = torch.tensor([[3, 1, 2, 2], [1, 2, 2, 1], [7, 8, 9, 9]])
    assert knn_vote(votes).tolist() == [2, 1, 9]  # 1 and 2 tied in row 1: 1 is the nearest
    assert knn_vote(torch.tensor([[5, 1, 2, 1, 2]])).tolist() == [1]  # 1 and 2 tied: 1 is met first
    assert knn_vote(torch.tensor([[4, 6, 8]])).tolist() == [4]  # all tied: the nearest neighbour's class


@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_knn_accuracy_matches_sklearn(k):
    x, y = _blobs(k, 300, 4, spread=1.5)
    ref, query, y_ref, y_query = x[:200], x[200:], y[:200], y[200:]
    near = nearest_neighbours(torch.tensor(query), torch.tensor(ref), k)
    pred = knn_vote(torch.tensor(y_ref)[near]).numpy()
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(ref, y_ref)
    proba = clf.predict_proba(query)
    tie_free = (proba == proba.max(axis=1, keepdims=True)).sum(axis=1) == 1  # sklearn breaks ties by label
    assert tie_free.sum() > 50
    np.testing.assert_array_equal(pred[tie_free], clf.predict(query)[tie_free])
    if k % 2 == 1:  # two classes, odd k: no vote ties at all
        y2_ref, y2_query = y_ref % 2, y_query % 2
        score = knn_accuracy(torch.tensor(y2_query), torch.tensor(y2_ref)[near], k, torch.tensor(y2_ref))
        clf2 = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(ref, y2_ref)
        assert score.value == pytest.approx(clf2.score(query, y2_query)) and score.reason == "" and score.n == 100


def test_knn_accuracy_hand_case_and_undefined_reasons():
    neighbours = torch.tensor([[0, 0, 1], [1, 1, 0], [1, 0, 0], [0, 1, 1]])
    true = torch.tensor([0, 1, 1, -1])  # votes 0, 1, 0; the unknown row is left out
    score = knn_accuracy(true, neighbours, 3, torch.tensor([0, 1, 1]))
    assert score == (pytest.approx(2 / 3), "", 3)
    assert knn_accuracy(true, neighbours, 1, torch.tensor([0, 1])).value == 1.0  # k=1 votes 0, 1, 1
    one_class = knn_accuracy(true, neighbours, 3, torch.tensor([0, 0, -1]))
    assert math.isnan(one_class.value) and "1 class" in one_class.reason
    unseen = knn_accuracy(torch.tensor([5, 6]), neighbours[:2], 3, torch.tensor([0, 1]))
    assert math.isnan(unseen.value) and "none of the 2 class(es) occur" in unseen.reason
    empty = knn_accuracy(torch.tensor([-1, -1]), neighbours[:2], 3, torch.tensor([0, 1]))
    assert math.isnan(empty.value) and empty.n == 0 and "no labelled" in empty.reason


def test_knn_accuracy_loo_matches_sklearn_refit_without_each_query():
    x, y = _blobs(3, 50, 3, spread=1.2)
    y[0] = 7  # a class of one: left out as a query, still a neighbour
    k = 5
    near = nearest_neighbours(torch.tensor(x), torch.tensor(x), k, exclude=torch.arange(50))
    score = knn_accuracy_loo(torch.tensor(y), torch.tensor(y)[near], k)
    right = []
    for i in range(1, 50):
        rest = np.delete(np.arange(50), i)
        # Neighbours from scikit-learn refitted without the query; the vote (and its tie rule) is ours.
        clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(x[rest], y[rest])
        right.append(knn_vote(torch.tensor(y[rest])[torch.tensor(clf.kneighbors(x[i : i + 1])[1])]).item() == y[i])
    assert score.n == 49 and score.value == pytest.approx(np.mean(right))
    singletons = knn_accuracy_loo(torch.tensor([0, 1, 2]), torch.tensor([[1], [0], [0]]), 1)
    assert math.isnan(singletons.value) and "single example" in singletons.reason
    one = knn_accuracy_loo(torch.tensor([4, 4, -1]), torch.tensor([[4], [4], [4]]), 1)
    assert math.isnan(one.value) and "1 class" in one.reason


def test_choose_k_best_accuracy_ties_to_smaller_and_capped():
    # Neighbour classes, nearest first: k=1 is right for rows 0-1, k=3 for all three rows.
    neighbours = torch.tensor([[0, 1, 0, 1, 1], [1, 0, 1, 0, 0], [1, 0, 0, 1, 1]])
    true, ref = torch.tensor([0, 1, 0]), torch.tensor([0, 1])
    k, scores, reason = choose_k(true, neighbours, (1, 3, 5, 99), ref)
    assert (k, reason) == (3, "") and set(scores) == {1, 3, 5}  # 99 exceeds the 5 neighbours
    assert scores[1] == pytest.approx(2 / 3) and scores[3] == 1.0
    k, _, _ = choose_k(torch.tensor([0, 1, 1]), neighbours, (1, 3), ref)  # both 2/3: the smaller wins
    assert k == 1
    k, _, reason = choose_k(torch.tensor([-1, -1, -1]), neighbours, (1, 3), ref)
    assert k is None and "no labelled" in reason


def test_neighbour_labels_per_level_skips_unlabelled_and_self():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=torch.float64)
    labels = torch.tensor([[0, 0], [0, -1], [1, 2], [1, 3]])
    coarse, fine = neighbour_labels_per_level(x, x, labels, 3, exclude=torch.arange(4))
    assert coarse[:, 0].tolist() == [0, 0, 1, 1]
    # At the fine level row 1 is no candidate; row 0 still never finds itself.
    assert fine[0, 0].item() in (2, 3) and fine.shape == (4, 2)
    assert fine[2].tolist() == [3, 0] and fine[1].tolist()[0] == 0


# --- mAP@R -------------------------------------------------------------------------------------


def _map_at_r_loop(x: np.ndarray, y: np.ndarray) -> float:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    aps = []
    for i in range(len(y)):
        r = int((y == y[i]).sum()) - 1
        if r == 0:
            continue
        dist = 1 - unit @ unit[i]
        dist[i] = np.inf
        order = np.argsort(dist, kind="stable")[:r]
        rel = y[order] == y[i]
        aps.append(sum(rel[: j + 1].sum() / (j + 1) for j in range(r) if rel[j]) / r)
    return float(np.mean(aps))


def test_map_at_r_hand_case():
    degrees = {0: "A", 10: "A", 22: "A", 15: "B", 100: "B", 200: "C"}
    x = torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees], dtype=torch.float64)
    y = torch.tensor([ord(c) for c in degrees.values()])
    # A0: [A10, B15] -> 1/2; A10: [B15, A0] -> (1/2)/2; A22: [B15, A10] -> (1/2)/2; B15: [A10] -> 0;
    # B100: [A22] -> 0; C (alone) is left out as a query.
    assert map_at_r(x, y, chunk_elems=5) == (pytest.approx(0.2), "", 5)


@pytest.mark.parametrize("seed", [0, 1])
def test_map_at_r_matches_loop(seed):
    x, y = _blobs(seed, 80, 5, spread=1.5)
    y[:3] = [11, 12, -1]
    got = map_at_r(torch.tensor(x), torch.tensor(y), chunk_elems=50)
    known = y >= 0
    assert got.value == pytest.approx(_map_at_r_loop(x[known], y[known])) and got.n == 77


def test_map_at_r_undefined():
    x = torch.randn(4, 3)
    assert "1 class" in map_at_r(x, torch.tensor([2, 2, 2, -1])).reason
    assert "single example" in map_at_r(x, torch.tensor([0, 1, 2, 3])).reason


# --- tree distances ----------------------------------------------------------------------------


def test_paired_tree_distance_matches_all_pairs_diagonal():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.integers(-1, 3, size=(50, 3)))
    b = torch.tensor(rng.integers(-1, 3, size=(50, 3)))
    np.testing.assert_array_equal(paired_tree_distance(a, b).numpy(), tree_distance(a, b).diagonal().numpy())


def test_class_paths_reads_the_path_of_each_code():
    labels = torch.tensor([[0, 0, 5], [0, 1, 6], [1, 2, 7], [1, 2, -1]])
    assert class_paths(torch.tensor([2, 0, -1]), labels, 1).tolist() == [[1, 2, -1], [0, 0, -1], [-1, -1, -1]]
    assert class_paths(torch.tensor([7]), labels, 2).tolist() == [[1, 2, 7]]


def test_mistake_severity_hand_case():
    true = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 2], [0, -1]])
    pred = torch.tensor([[0, 1], [1, 2], [0, 1], [1, 2], [1, 3]])
    # Wrong: row 0 (sibling, 2) and row 1 (other family, 4); row 4 has no fine label.
    assert mistake_severity(true, pred) == (pytest.approx(3.0), "", 2)
    none_wrong = mistake_severity(true[2:4], pred[2:4])
    assert math.isnan(none_wrong.value) and "no wrong prediction" in none_wrong.reason


def test_spearman_matches_scipy_over_decided_pairs():
    from scipy.stats import spearmanr

    x, fine = _blobs(4, 40, 6, spread=1.0)
    labels = np.stack([fine // 3, fine], axis=1)
    labels[:4, 1] = -1  # incomplete labels: some pairs undecided
    got = tree_distance_spearman(torch.tensor(x), torch.tensor(labels))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    i, j = np.triu_indices(40, 1)
    tree = tree_distance(torch.tensor(labels), torch.tensor(labels)).numpy()[i, j]
    dist = 1 - (unit[i] * unit[j]).sum(axis=1)
    want = spearmanr(tree[tree >= 0], dist[tree >= 0]).statistic
    assert got.value == pytest.approx(want) and got.reason == ""


def test_spearman_sampled_above_the_cap_is_seeded_and_close():
    x, fine = _blobs(5, 400, 8, spread=1.0)
    labels = torch.tensor(np.stack([fine // 4, fine], axis=1))
    exact = tree_distance_spearman(torch.tensor(x), labels).value
    a = tree_distance_spearman(torch.tensor(x), labels, max_pairs=20_000, seed=1).value
    b = tree_distance_spearman(torch.tensor(x), labels, max_pairs=20_000, seed=1).value
    c = tree_distance_spearman(torch.tensor(x), labels, max_pairs=20_000, seed=2).value
    assert a == b and a != c and abs(a - exact) < 0.03


def test_spearman_undefined():
    same = tree_distance_spearman(torch.randn(5, 3), torch.zeros(5, 2, dtype=torch.long))
    assert math.isnan(same.value) and "distinct distances" in same.reason
    assert "needs pairs" in tree_distance_spearman(torch.randn(1, 3), torch.zeros(1, 2, dtype=torch.long)).reason


# --- unseen classes ----------------------------------------------------------------------------


def test_parent_accuracy_at_the_lowest_seen_parent():
    ref = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 2, 2]])
    query = torch.tensor([[0, 0, 9], [0, 1, 8], [1, 3, 7], [2, 4, 6]])  # parents seen: 1, 1, 0 (family), none
    assert lowest_seen_parent(query, ref).tolist() == [1, 1, 0, -1]
    predicted = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 2, 2], [0, 0, 0]])
    score, used = parent_accuracy(query, predicted, ref)
    assert score == (pytest.approx(2 / 3), "", 3) and used == [0, 1]
    score, _ = parent_accuracy(query[3:], predicted[3:], ref)
    assert math.isnan(score.value) and "no example has a parent" in score.reason
    assert "one level" in parent_accuracy(query[:, :1], predicted[:, :1], ref[:, :1])[0].reason
