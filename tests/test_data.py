import os

import pandas as pd
import pytest

from rbl.data import build_manifest, read_csv, unlisted_files
from rbl.errors import InputError
from rbl.taxonomy import Taxonomy

TAX = Taxonomy.from_frame(pd.DataFrame({"family": ["A", "A", "B"], "kind": ["a1", "a2", "b1"]}))


@pytest.fixture
def root(tmp_path):
    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    for name in ("x.wav", "y.wav", "sub/z.wav", "stray.wav"):
        (audio / name).write_bytes(b"RIFF")
    return audio


def frame(rows):
    return pd.DataFrame(rows, columns=["file", "label"]).astype(str)


def test_manifest_levels_groups_and_incomplete_labels(root):
    m = build_manifest(frame([["x.wav", "a1"], ["sub/z.wav", "B"]]), TAX, root, "ann.csv")
    assert m[["family", "kind"]].values.tolist() == [["A", "a1"], ["B", ""]]
    assert m["group"].tolist() == ["x.wav", "sub/z.wav"]  # no group column: each file its own
    assert unlisted_files(root, set(m["file"]), {".wav"}) == ["stray.wav", "y.wav"]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["x.wav", "a1"], ["x.wav", "a2"]], "ann.csv line 3: 'x.wav' is listed again \\(first at line 2\\)"),
        # The same file under another spelling is the same clip (issue 13: 48 such rows passed).
        (
            [["x.wav", "a1"], ["y.wav", "a1"], ["./x.wav", "a1"]],
            "ann.csv line 4: './x.wav' \\(the same file as 'x.wav'\\) is listed again \\(first at line 2\\)",
        ),
        (
            [["sub/../x.wav", "a1"], ["x.wav", "a2"]],
            "ann.csv line 3: 'x.wav' \\(the same file as 'sub/../x.wav'\\) is listed again \\(first at line 2\\)",
        ),
        ([["sub//z.wav", "a1"], ["sub\\z.wav", "a1"]], "line 3: 'sub/z.wav' \\(the same file as 'sub//z.wav'\\)"),
        ([["sub/../../escape.wav", "a1"]], "line 2: 'sub/../../escape.wav' points outside the root folder"),
        ([["x.wav", "nope"]], "ann.csv line 2: label 'nope' is not a node"),
        ([["../escape.wav", "a1"]], "line 2: '../escape.wav' points outside the root folder"),
        ([["/etc/passwd", "a1"]], "line 2: '/etc/passwd' is an absolute path"),
        ([["x.wav", "a1"], ["gone.wav", "a2"]], "1 annotated file\\(s\\) not found:\n  ann.csv line 3"),
    ],
)
def test_bad_annotations_name_file_and_row(root, rows, message):
    with pytest.raises(InputError, match=message):
        build_manifest(frame(rows), TAX, root, "ann.csv")


def test_paths_are_normalised(root):
    m = build_manifest(
        frame([["./x.wav", "a1"], ["sub/./../sub/z.wav", "B"], ["sub\\..\\y.wav", "a2"]]), TAX, root, "ann.csv"
    )
    assert m["file"].tolist() == ["x.wav", "sub/z.wav", "y.wav"]
    assert m["group"].tolist() == m["file"].tolist()
    assert m["path"].tolist() == [str(root / f) for f in ("x.wav", "sub/z.wav", "y.wav")]


def test_symlink_inside_root_is_the_same_file(root):
    os.symlink(root / "x.wav", root / "alias.wav")
    with pytest.raises(InputError, match="line 3: 'alias.wav' \\(the same file as 'x.wav'\\) is listed again"):
        build_manifest(frame([["x.wav", "a1"], ["alias.wav", "a1"]]), TAX, root, "ann.csv")


def test_two_clips_with_one_feature_file_are_one_row(root):
    (root / "x.npy").write_bytes(b"")
    with pytest.raises(InputError, match="line 3: 'x.flac' \\(the same file as 'x.wav'\\) is listed again"):
        build_manifest(frame([["x.wav", "a1"], ["x.flac", "a1"]]), TAX, root, "ann.csv", suffix=".npy")


def test_symlink_out_of_root_is_refused(root, tmp_path):
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF")
    os.symlink(outside, root / "link.wav")
    with pytest.raises(InputError, match="outside the root folder"):
        build_manifest(frame([["link.wav", "a1"]]), TAX, root, "ann.csv")


def test_missing_column(root):
    with pytest.raises(InputError, match="no 'label' column"):
        build_manifest(pd.DataFrame({"file": ["x.wav"]}), TAX, root, "ann.csv")


def test_csv_with_bom_reads_and_latin1_is_explained(tmp_path):
    good = tmp_path / "bom.csv"
    good.write_bytes("\ufefffile,label\nx.wav,a1\n".encode("utf-8"))
    assert list(read_csv(good).columns) == ["file", "label"]
    bad = tmp_path / "latin.csv"
    bad.write_bytes("file,label\ncaf\xe9.wav,a1\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin.csv: not UTF-8"):
        read_csv(bad)


@pytest.fixture
def busy(tmp_path):
    """A folder with more files than the resolver checks one by one before listing it."""
    from rbl.data import LIST_FOLDER_AFTER

    audio = tmp_path / "busy"
    audio.mkdir()
    names = [f"c{i:03d}.wav" for i in range(LIST_FOLDER_AFTER + 10)]
    for name in names:
        (audio / name).write_bytes(b"RIFF" + name.encode())
    return audio, names


def test_symlinks_of_a_listed_folder_are_seen(busy, tmp_path):
    """Past LIST_FOLDER_AFTER files a folder is listed once instead of an lstat per file: a link
    late in the table is still the same file as its target, and one out of the root is refused."""
    audio, names = busy
    os.symlink(audio / names[0], audio / "zalias.wav")
    with pytest.raises(InputError, match=f"'zalias.wav' \\(the same file as '{names[0]}'\\) is listed again"):
        build_manifest(frame([[n, "a1"] for n in names] + [["zalias.wav", "a1"]]), TAX, audio, "ann.csv")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF")
    os.symlink(outside, audio / "zlink.wav")
    with pytest.raises(InputError, match=f"line {len(names) + 2}: 'zlink.wav' points outside the root folder"):
        build_manifest(frame([[n, "a1"] for n in names] + [["zlink.wav", "a1"]]), TAX, audio, "ann.csv")
    os.symlink(audio / "loop.wav", audio / "loop.wav")
    with pytest.raises(InputError, match="'loop.wav' cannot be resolved"):
        build_manifest(frame([[n, "a1"] for n in names] + [["loop.wav", "a1"]]), TAX, audio, "ann.csv")


def test_the_manifest_passes_on_each_clips_stat(busy):
    audio, names = busy
    stats: list = []
    m = build_manifest(frame([[n, "a1"] for n in names]), TAX, audio, "ann.csv", stats=stats)
    assert [(s.st_ino, s.st_size) for s in stats] == [(os.stat(p).st_ino, os.path.getsize(p)) for p in m["path"]]


def test_unprintable_but_legal_names_pass(root):
    (root / "a\u00a0b.wav").write_bytes(b"RIFF")  # a no-break space: not printable, no control character
    (root / "1:").mkdir()
    (root / "1:" / "x.wav").write_bytes(b"RIFF")  # ':/' after a digit: no drive letter
    m = build_manifest(frame([["a\u00a0b.wav", "a1"], ["1:/x.wav", "a1"]]), TAX, root, "ann.csv")
    assert m["file"].tolist() == ["a\u00a0b.wav", "1:/x.wav"]
