import math

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier

from rbl.evaluation import COLUMNS, evaluate_embeddings
from rbl.metrics import choose_k, neighbour_labels_per_level

LEVELS = ["family", "instrument"]
METRICS = {"silhouette", "knn_acc", "knn_acc_loo", "map_at_r", "mistake_severity", "spearman", "parent_acc"}


def _dataset(seed: int = 0, n: int = 600, dim: int = 6):
    """3 families x 4 instruments; instrument 3 of every family only in test_unseen."""
    rng = np.random.default_rng(seed)
    fine = rng.integers(0, 12, size=n)
    coarse = fine // 4
    emb = 2.0 * rng.normal(size=(3, dim))[coarse] + rng.normal(size=(12, dim))[fine] + 1.2 * rng.normal(size=(n, dim))
    split = rng.choice(np.array(["train", "val", "test_seen"]), size=n, p=[0.6, 0.2, 0.2]).astype(object)
    split[fine % 4 == 3] = "test_unseen"
    return emb, np.stack([coarse, fine], axis=1), split.astype(str)


def _value(table, split, level, metric):
    row = table[(table["split"] == split) & (table["level"] == level) & (table["metric"] == metric)]
    assert len(row) == 1, (split, level, metric)
    return row.iloc[0]


@pytest.fixture(scope="module")
def table():
    emb, labels, split = _dataset()
    return evaluate_embeddings(emb, labels, split, LEVELS)


def test_long_table_shape_names_and_reasons(table):
    assert list(table.columns) == COLUMNS
    assert set(table["metric"]) == METRICS
    assert set(table["split"]) == {"val", "test_seen", "test_unseen"}
    assert (table[table["metric"] == "spearman"]["level"] == "all").all()
    assert set(table[table["metric"] == "mistake_severity"]["level"]) == {"instrument"}
    assert list(table[table["metric"] == "parent_acc"]["split"]) == ["test_unseen"]
    # A reason exactly where the value is undefined.
    assert ((table["reason"] != "") == table["value"].isna()).all()
    assert table[table["metric"].isin(["knn_acc", "knn_acc_loo"])]["k"].notna().all()
    assert table[table["metric"].isin(["silhouette", "map_at_r", "spearman"])]["k"].isna().all()


def test_unseen_split_fine_knn_is_explained_and_parent_level_is_scored(table):
    fine = _value(table, "test_unseen", "instrument", "knn_acc")
    assert math.isnan(fine["value"]) and "0 by design" in fine["reason"]
    assert not math.isnan(_value(table, "test_unseen", "instrument", "knn_acc_loo")["value"])
    parent = _value(table, "test_unseen", "family", "parent_acc")
    assert parent["value"] == pytest.approx(_value(table, "test_unseen", "family", "knn_acc")["value"])
    severity = _value(table, "test_unseen", "instrument", "mistake_severity")["value"]
    assert 2.0 <= severity <= 4.0  # every fine prediction is wrong; 2 = right family, 4 = wrong family


def test_rows_match_sklearn(table):
    emb, labels, split = _dataset()
    train, test = split == "train", split == "test_seen"
    for l, level in enumerate(LEVELS):
        sil = _value(table, "test_seen", level, "silhouette")
        assert sil["value"] == pytest.approx(silhouette_score(emb[test], labels[test, l], metric="cosine"), abs=1e-5)
        row = _value(table, "test_seen", level, "knn_acc")
        k = int(row["k"])
        clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(emb[train], labels[train, l])
        proba = clf.predict_proba(emb[test])
        ties = ((proba == proba.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum()
        # Only vote ties may differ (scikit-learn gives them to the smallest label, we to the nearest).
        assert abs(row["value"] - clf.score(emb[test], labels[test, l])) <= ties / test.sum() + 1e-12
        assert row["n"] == test.sum()


def test_k_is_chosen_on_validation_only():
    emb, labels, split = _dataset(1)
    base = evaluate_embeddings(emb, labels, split, LEVELS)
    # Scramble everything the test splits hold: labels and embeddings.
    rng = np.random.default_rng(9)
    test = np.isin(split, ["test_seen", "test_unseen"])
    emb2, labels2 = emb.copy(), labels.copy()
    emb2[test] = rng.normal(size=emb2[test].shape)
    labels2[test] = labels[test][rng.permutation(test.sum())]
    scrambled = evaluate_embeddings(emb2, labels2, split, LEVELS)
    knn = base["metric"].isin(["knn_acc", "knn_acc_loo"])
    np.testing.assert_array_equal(base.loc[knn, "k"].to_numpy(), scrambled.loc[knn, "k"].to_numpy())
    # And the k reported is the one validation alone picks.
    x, y = torch.tensor(emb), torch.tensor(labels)
    val, train = torch.tensor(split == "val"), torch.tensor(split == "train")
    near = neighbour_labels_per_level(x[val], x[train], y[train], 15)
    for l, level in enumerate(LEVELS):
        k, _, _ = choose_k(y[val][:, l], near[l], ref_labels=y[train][:, l])
        for name in ("val", "test_seen"):
            assert _value(base, name, level, "knn_acc")["k"] == k


def test_undefined_cases_do_not_crash():
    emb, labels, split = _dataset(2, n=200)
    labels[split == "val", 1] = -1  # no fine labels in val: k cannot be chosen at that level
    split[split == "test_seen"] = "train"  # no test_seen at all
    table = evaluate_embeddings(emb, labels, split, LEVELS)
    fine_val = _value(table, "val", "instrument", "knn_acc")
    assert math.isnan(fine_val["value"]) and "k not chosen on val" in fine_val["reason"]
    assert math.isnan(_value(table, "test_unseen", "instrument", "mistake_severity")["value"])
    seen = table[table["split"] == "test_seen"]
    assert seen["value"].isna().all() and (seen["reason"] != "").all()
    assert not math.isnan(_value(table, "val", "family", "knn_acc")["value"])
    assert ((table["reason"] != "") == table["value"].isna()).all()


def test_one_level_taxonomy_and_float64_input():
    emb, labels, split = _dataset(3, n=200)
    table = evaluate_embeddings(emb.astype(np.float64), labels[:, 1:], split, ["instrument"], k_candidates=(1, 3))
    parent = _value(table, "test_unseen", "instrument", "parent_acc")
    assert math.isnan(parent["value"]) and "one level" in parent["reason"]
    assert set(table["k"].dropna()) <= {1.0, 3.0}
