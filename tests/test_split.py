import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from rbl.errors import InputError
from rbl.split import draw, make_splits, place_sorted

FRACTIONS = {"train": 0.6, "val": 0.2, "test_seen": 0.2}
LEVELS = ["family", "kind"]


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def row(family, kind, file, group, content=None):
    return {
        "file": file,
        "sha256": sha(content or file),
        "label": kind,
        "group": group,
        "split": "",
        "family": family,
        "kind": kind,
    }


def manifest(n_per_leaf=10, explicit=None):
    rows = [
        row(family, f"{family}{leaf}", f"{family}{leaf}_{k}.wav", f"{family}{leaf}-g{k // 2}")
        for family in ("A", "B", "C")
        for leaf in range(4)
        for k in range(n_per_leaf)
    ]
    frame = pd.DataFrame(rows)
    if explicit is not None:
        frame["split"] = explicit
    return frame


def shaped(groups_per_leaf, clips_per_group=1, families=3, leaves=4, tag=""):
    """A manifest whose leaf j of every family has groups_per_leaf[j % len] groups."""
    rows = []
    for f in range(families):
        for leaf in range(leaves):
            kind = f"F{f}L{leaf}"
            for g in range(groups_per_leaf[leaf % len(groups_per_leaf)]):
                for c in range(clips_per_group):
                    rows.append(row(f"F{f}", kind, f"{kind}/g{g}{tag}_c{c}.wav", f"{kind}-g{g}{tag}"))
    return pd.DataFrame(rows)


def splits(m, seed, unseen=0, fractions=FRACTIONS):
    return make_splits(m, LEVELS, unseen, fractions, seed).set_index("file")["split"]


def every_split_drawn(m, seed, fractions=FRACTIONS):
    """Classes where each split was drawn by some group (brute force over the intervals)."""
    edges = np.cumsum([fractions[n] for n in ("train", "val", "test_seen")])
    out = set()
    for kind, rows in m.groupby("kind"):
        drawn = {int(np.searchsorted(edges, draw(seed, "group\x00" + g), side="right")) for g in set(rows["group"])}
        if drawn == {0, 1, 2}:
            out.add(kind)
    return out


def test_unseen_classes_are_whole_and_never_trained():
    m = manifest()
    s = splits(m, 0, unseen=1)
    m["split"] = s.loc[m["file"]].to_numpy()
    unseen = set(m.loc[m.split == "test_unseen", "kind"])
    assert len(unseen) == 3 and {k[0] for k in unseen} == {"A", "B", "C"}  # one per parent
    assert not unseen & set(m.loc[m.split != "test_unseen", "kind"])
    # Groups never straddle splits; every seen class has train, val and test_seen clips.
    assert (m.groupby("group")["split"].nunique() == 1).all()
    seen = m[m.split != "test_unseen"]
    assert (seen.groupby("kind")["split"].nunique() == 3).all()


def test_seeded_and_deterministic():
    m = manifest()
    a = make_splits(m, LEVELS, 1, FRACTIONS, seed=3)
    b = make_splits(m.iloc[::-1].reset_index(drop=True), LEVELS, 1, FRACTIONS, seed=3)
    c = make_splits(m, LEVELS, 1, FRACTIONS, seed=4)
    # The same seed gives the same split whatever the row order; another seed another split.
    assert a.equals(b.iloc[::-1].reset_index(drop=True)) and not a.equals(c)


def test_draw_is_uniform_and_fixed():
    u = np.array([draw(0, f"group\x00g{i}") for i in range(20000)])
    assert 0 <= u.min() and u.max() < 1
    # 20 equal bins of 1000 expected each: a chi-square far above its 99.9% point (43.8) would
    # mean the draw is not uniform.
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    assert ((counts - 1000) ** 2 / 1000).sum() < 43.8
    assert draw(0, "x") == draw(0, "x") != draw(1, "x")


@pytest.mark.parametrize(
    "u, expected",
    [
        ([0.1, 0.2, 0.3, 0.4], ["train", "train", "val", "test_seen"]),  # no val, no test drawn: filled
        ([0.7, 0.8, 0.9], ["train", "val", "test_seen"]),  # 0.8 drew test, nearest the val range
        ([0.1, 0.65, 0.7, 0.95], ["train", "val", "val", "test_seen"]),  # all drawn: draws kept
        ([0.9], ["train"]),
        ([0.7, 0.9], ["train", "test_seen"]),  # two groups: only train is guaranteed
        ([0.1, 0.3], ["train", "train"]),
    ],
)
def test_place_sorted_by_hand(u, expected):
    assert place_sorted(np.array(u), FRACTIONS) == expected


def test_place_sorted_without_test_seen():
    assert place_sorted(np.array([0.1, 0.2, 0.95]), {"train": 0.5, "val": 0.5, "test_seen": 0}) == [
        "train",
        "train",
        "val",
    ]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(1, 2, 3, 5), (2, 8, 12, 30), (10,), (4, 40)])
def test_adding_data_never_moves_a_clip(seed, shape):
    """Issue 13: clips to existing classes (new groups, and clips of existing groups) must not move
    an earlier clip; the only exception is a class where some split had no group drawing it."""
    before = shaped(shape, clips_per_group=2)
    s0 = splits(before, seed)
    # One more clip in every existing group of every third class, one new group in every second class.
    grown = [before]
    for i, (kind, rows) in enumerate(before.groupby("kind")):
        family = rows.family.iloc[0]
        if i % 3 == 0:
            grown.append(pd.DataFrame([row(family, kind, f"{g}-extra.wav", g) for g in rows.group.unique()]))
        if i % 2 == 0:
            grown.append(pd.DataFrame([row(family, kind, f"{kind}/new.wav", f"{kind}-new")]))
    after = pd.concat(grown, ignore_index=True)
    s1 = splits(after, seed)
    moved = before.loc[(s1.loc[before.file].to_numpy() != s0.loc[before.file].to_numpy()), "kind"]
    assert set(moved) <= set(before.kind) - every_split_drawn(before, seed)
    # New clips of existing groups join their group's split.
    for _, rows in after.groupby("group"):
        assert s1.loc[rows.file].nunique() == 1


@pytest.mark.parametrize("seed", range(5))
def test_issue_13_five_clips_to_five_classes_move_nothing(seed):
    before = shaped((16,), families=3, leaves=5)  # demo-like: 15 classes, 16 single-clip groups
    s0 = splits(before, seed, unseen=1)
    added = [
        row(f"F{f}", f"F{f}L{f}", f"F{f}L{f}/added{i}.wav", f"F{f}L{f}/added{i}.wav")
        for i, f in enumerate([0, 1, 2, 0, 1])
    ]
    s1 = splits(pd.concat([before, pd.DataFrame(added)], ignore_index=True), seed, unseen=1)
    flagged = set(before.kind) - every_split_drawn(before, seed)
    moved = before.file[s1.loc[before.file].to_numpy() != s0.loc[before.file].to_numpy()]
    assert all(f.split("/")[0] in flagged for f in moved)
    # Classes that got no clip never move, whatever their draws.
    untouched = before.file[~before.kind.isin({r["kind"] for r in added})]
    assert (s1.loc[untouched] == s0.loc[untouched]).all()


@pytest.mark.parametrize("seed", range(5))
def test_a_new_leaf_moves_only_its_parents_held_out_choice(seed):
    before = shaped((6,), families=3, leaves=4)
    new_leaf = pd.DataFrame([row("F1", "F1L9", f"F1L9/{k}.wav", f"F1L9/{k}.wav") for k in range(6)])
    after = pd.concat([before, new_leaf], ignore_index=True)
    s0, s1 = splits(before, seed), splits(after, seed)
    assert (s1.loc[before.file] == s0).all()  # nothing held out: nothing moves
    s0, s1 = splits(before, seed, unseen=1), splits(after, seed, unseen=1)
    moved = set(before.kind[s1.loc[before.file].to_numpy() != s0.loc[before.file].to_numpy()])
    held_out_f1 = set(before.kind[(s0.loc[before.file] == "test_unseen").to_numpy() & (before.family == "F1")])
    # At most F1's held-out leaf moves (the new leaf drew lower and took its place); then it is seen.
    assert moved <= held_out_f1 and len(held_out_f1) == 1
    if moved:
        assert (s1.loc[after.file[after.kind == "F1L9"]] == "test_unseen").all()
        assert "test_unseen" not in set(s1.loc[before.file[before.kind.isin(moved)]])


@pytest.mark.parametrize("seed", range(5))
def test_fractions_hold_within_binomial_noise(seed):
    m = shaped((400,), families=2, leaves=3)  # 2400 single-clip groups in 6 classes
    s = splits(m, seed)
    n = len(m)
    for name, f in FRACTIONS.items():
        # Each group's draw is independent, so a split's share is binomial: 4 standard deviations
        # (0.04 for train, 0.033 for val and test_seen) hold for a correct split at any seed, and a
        # split that ignored the fractions (e.g. equal thirds) would be far outside.
        assert abs((s == name).mean() - f) < 4 * math.sqrt(f * (1 - f) / n), name


@pytest.mark.parametrize("seed", range(10))
def test_small_classes_are_trained_on_and_filled(seed):
    m = shaped((1, 2, 3, 4, 5), families=2, leaves=10)
    s = splits(m, seed)
    m["split"] = s.loc[m.file].to_numpy()
    per_class = m.groupby("kind").agg(groups=("group", "nunique"), splits=("split", set))
    assert all("train" in s for s in per_class.splits)  # every seen class is trained on
    assert all(s == {"train", "val", "test_seen"} for s in per_class.loc[per_class.groups >= 3, "splits"])


@pytest.mark.parametrize("seed", range(3))
def test_identical_content_lands_in_one_split(seed):
    m = shaped((16,), families=2, leaves=3)
    # 48 recordings present twice under another name and group (the old split put 42 in two splits).
    copies = m.iloc[:48].copy()
    copies["file"] = "copy/" + copies["file"]
    copies["group"] = "copy-" + copies["group"]
    both = pd.concat([m, copies], ignore_index=True)
    s = splits(both, seed)
    assert (s.loc[m.file[:48]].to_numpy() == s.loc[copies.file].to_numpy()).all()


def test_identical_content_joins_whole_groups():
    # a and b are recordings of several clips; one shared clip joins them in one split.
    rows = [row("F0", "F0L0", f"{g}/{k}.wav", g) for g in ("a", "b") for k in range(3)]
    rows.append(row("F0", "F0L0", "b/shared.wav", "b", content="a/0.wav"))
    rows += [row("F0", "F0L0", f"other{k}.wav", f"other{k}") for k in range(20)]
    for seed in range(10):
        s = splits(pd.DataFrame(rows), seed)
        assert s[[f"{g}/{k}.wav" for g in "ab" for k in range(3)] + ["b/shared.wav"]].nunique() == 1


def test_identical_content_under_two_labels_names_both_lines():
    m = shaped((3,), families=1, leaves=2)
    m.loc[4, "sha256"] = m.loc[1, "sha256"]
    with pytest.raises(
        InputError,
        match=r"man.csv: 'F0L0/g1_c0.wav' \(annotation line 3, label 'F0L0'\) and "
        r"'F0L1/g1_c0.wav' \(annotation line 6, label 'F0L1'\) have identical "
        r"content .* different labels",
    ):
        make_splits(m, LEVELS, 0, FRACTIONS, 0, source="man.csv")


def test_identical_content_in_two_explicit_splits_is_refused():
    m = manifest(n_per_leaf=2, explicit=["train", "val"] * 12)
    m.loc[1, "sha256"] = m.loc[0, "sha256"]
    with pytest.raises(
        InputError,
        match=r"line 2, split 'train'\) and 'A0_1.wav' \(annotation line 3, "
        r"split 'val'\) have identical content",
    ):
        make_splits(m, LEVELS, 1, FRACTIONS, seed=0)


def test_skipped_clips_with_shared_content_are_not_a_label_conflict():
    # Two 0-byte files (one sha256) under different labels, both skipped as undecodable: no error,
    # since they are used nowhere; not skipped, they are a conflict naming both lines.
    m = shaped((5,), families=1, leaves=2)
    m.loc[[3, 8], "sha256"] = sha("")
    s = make_splits(m, LEVELS, 0, FRACTIONS, 0, skipped={m.file[3], m.file[8]}).set_index("file")["split"]
    assert (s[[m.file[3], m.file[8]]] == "skipped").all() and (s.drop([m.file[3], m.file[8]]) != "skipped").all()
    with pytest.raises(InputError, match="annotation line 5, .*annotation line 10, .*different labels"):
        make_splits(m, LEVELS, 0, FRACTIONS, 0)


def test_manifest_without_hashes_is_refused():
    with pytest.raises(InputError, match="old.csv: no 'sha256' column"):
        make_splits(manifest().drop(columns="sha256"), LEVELS, 0, FRACTIONS, 0, source="old.csv")


def test_explicit_split_column_is_honoured():
    m = manifest(n_per_leaf=2)
    explicit = ["val" if i % 3 else "train" for i in range(len(m))]
    s = make_splits(manifest(2, explicit), LEVELS, 1, FRACTIONS, seed=0)
    assert list(s["split"]) == explicit


def test_empty_train_split_is_an_error():
    m = manifest(n_per_leaf=1)
    m = m[m["kind"].str.endswith("0")]  # one leaf per parent
    with pytest.raises(InputError, match="no clip landed in 'train'"):
        make_splits(m, LEVELS, 0, {"train": 0.0, "val": 1.0, "test_seen": 1.0}, seed=0)


def test_split_command_names_both_annotation_lines_of_a_copy_under_another_label(tmp_path, capsys):
    from rbl.cli import main

    (tmp_path / "audio").mkdir()
    for name, content in (("x.wav", b"same"), ("y.wav", b"same"), ("z.wav", b"other")):
        (tmp_path / "audio" / name).write_bytes(content)
    (tmp_path / "taxonomy.csv").write_text("family,kind\nA,a1\nA,a2\nB,b1\n")
    (tmp_path / "annotations.csv").write_text("file,label\nx.wav,a1\nz.wav,b1\n./y.wav,a2\n")
    assert (
        main(
            [
                "--quiet",
                "ingest",
                "--taxonomy",
                str(tmp_path / "taxonomy.csv"),
                "--annotations",
                str(tmp_path / "annotations.csv"),
                "--audio-root",
                str(tmp_path / "audio"),
                "--out-manifest",
                str(tmp_path / "manifest.csv"),
                "--out-taxonomy",
                str(tmp_path / "tax.csv"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "split",
                "--manifest",
                str(tmp_path / "manifest.csv"),
                "--taxonomy",
                str(tmp_path / "tax.csv"),
                "--unseen-per-parent",
                "0",
                "--fractions",
                "train=0.6,val=0.2,test_seen=0.2",
                "--seed",
                "0",
                "--out",
                str(tmp_path / "splits.csv"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        f"error: {tmp_path / 'manifest.csv'}: 'x.wav' (annotation line 2, label 'a1') and 'y.wav' (annotation "
        "line 4, label 'a2') have identical content"
    ) in err and "Traceback" not in err
    assert not (tmp_path / "splits.csv").exists()
