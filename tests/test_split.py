import pandas as pd
import pytest

from rbl.errors import InputError
from rbl.split import make_splits

FRACTIONS = {"train": 0.6, "val": 0.2, "test_seen": 0.2}


def manifest(n_per_leaf=10, explicit=None):
    rows = []
    for family in ("A", "B", "C"):
        for leaf in range(4):
            for k in range(n_per_leaf):
                rows.append({"file": f"{family}{leaf}_{k}.wav", "family": family, "kind": f"{family}{leaf}",
                             "group": f"{family}{leaf}-g{k // 2}", "split": ""})
    frame = pd.DataFrame(rows)
    if explicit is not None:
        frame["split"] = explicit
    return frame


def test_unseen_classes_are_whole_and_never_trained():
    m = manifest()
    s = make_splits(m, ["family", "kind"], 1, FRACTIONS, seed=0).set_index("file")["split"]
    m["split"] = s.loc[m["file"]].to_numpy()
    unseen = set(m.loc[m.split == "test_unseen", "kind"])
    assert len(unseen) == 3 and {k[0] for k in unseen} == {"A", "B", "C"}  # one per parent
    assert not unseen & set(m.loc[m.split != "test_unseen", "kind"])
    # Groups never straddle splits; every seen class is in train.
    assert (m.groupby("group")["split"].nunique() == 1).all()
    seen = m[m.split != "test_unseen"]
    assert set(seen.kind) == set(seen.loc[seen.split == "train", "kind"])
    counts = seen.split.value_counts(normalize=True)
    assert counts["train"] == pytest.approx(0.6, abs=0.05)


def test_seeded_and_deterministic():
    m = manifest()
    a = make_splits(m, ["family", "kind"], 1, FRACTIONS, seed=3)
    b = make_splits(m, ["family", "kind"], 1, FRACTIONS, seed=3)
    c = make_splits(m, ["family", "kind"], 1, FRACTIONS, seed=4)
    assert a.equals(b) and not a.equals(c)


def test_explicit_split_column_is_honoured():
    m = manifest(n_per_leaf=2)
    explicit = ["val" if i % 3 else "train" for i in range(len(m))]
    s = make_splits(manifest(2, explicit), ["family", "kind"], 1, FRACTIONS, seed=0)
    assert list(s["split"]) == explicit


def test_empty_train_split_is_an_error():
    m = manifest(n_per_leaf=1)
    m = m[m["kind"].str.endswith("0")]  # one leaf per parent: it is held out
    with pytest.raises(InputError, match="no clip landed in 'train'"):
        make_splits(m, ["family", "kind"], 0, {"train": 0.0001, "val": 1.0, "test_seen": 1.0}, seed=0)
