"""README.md's results tables are rendered from the committed docs/results/<ds>/summary.csv files
(scripts/readme_tables.py); the README must match what the script renders."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rbl.errors import InputError
from rbl.summary import kept_epochs, read_summary

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_tables", REPO / "scripts/readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)


def test_committed_readme_matches_the_committed_summaries(capsys):
    assert readme_tables.main(["--check"]) == 0, capsys.readouterr().out
    readme = (REPO / "README.md").read_text()
    cited = readme_tables.datasets(readme)
    assert set(cited) == {"instruments", "speech", "demo", "tut2016"}
    assert all((REPO / "docs/results" / d / "summary.csv").is_file() for d in cited)
    assert readme_tables.datasets_with_epochs(readme) == ["tut2016"]


def _setup(tmp_path, readme_text):
    """A README and tables folder holding a frozen demo summary (tests/data/demo_summary.csv, an
    earlier demo run), so the expected rows below do not change with the committed results."""
    tables = tmp_path / "tables"
    (tables / "demo").mkdir(parents=True)
    shutil.copy(REPO / "tests/data/demo_summary.csv", tables / "demo/summary.csv")
    readme = tmp_path / "README.md"
    readme.write_text(readme_text)
    return readme, tables


def test_stale_table_is_reported_and_rewritten(tmp_path, capsys):
    text = (
        "intro, quoting `<!-- table:demo bogus -->` and `<!-- /table -->`\n\n<!-- table:demo silhouette -->\n"
        "| old | table |\n<!-- /table -->\n\nafter\n"
    )
    readme, tables = _setup(tmp_path, text)
    args = ["--readme", str(readme), "--tables", str(tables)]
    assert readme_tables.main(args + ["--check"]) == 1
    out = capsys.readouterr().out
    assert "-| old | table |" in out and "+| RbL | 3 | 0.824 ± 0.034 (+0.383) |" in out
    assert readme.read_text() == text  # --check changes nothing
    assert readme_tables.main(args) == 0
    rewritten = readme.read_text()
    assert rewritten.startswith(text.split("| old")[0] + "\n| experiment | seeds | val family |")
    assert rewritten.endswith("|\n\n<!-- /table -->\n\nafter\n")
    # The InitEmb row, value by value from summary.csv (one seed: no std, no change).
    table = read_summary(tables / "demo/summary.csv")
    sil = table[(table["experiment"] == "InitEmb") & (table["metric"] == "silhouette")]
    assert "| InitEmb | 1 | " + " | ".join(f"{v:.3f}" for v in sil["mean"]) + " |" in rewritten
    assert readme_tables.main(args + ["--check"]) == 0


def test_average_table_is_the_mean_of_the_level_means(tmp_path):
    readme, tables = _setup(tmp_path, "<!-- table:demo average test_seen -->\n<!-- /table -->\n")
    readme_tables.main(["--readme", str(readme), "--tables", str(tables)])
    table = read_summary(tables / "demo/summary.csv")
    part = table[(table["split"] == "test_seen") & (table["metric"] == "silhouette")]
    rbl = part[part["experiment"] == "RbL"]
    expected = (
        f"| RbL | 3 | {rbl['mean'].iloc[0]:.3f} ± {rbl['std'].iloc[0]:.3f} | "
        f"{rbl['mean'].iloc[1]:.3f} ± {rbl['std'].iloc[1]:.3f} | {rbl['mean'].mean():.3f} |"
    )
    assert expected in readme.read_text()
    assert "| experiment | seeds | family silhouette | sound silhouette | average |" in readme.read_text()


def test_from_results_copies_the_cited_summaries(tmp_path):
    readme, tables = _setup(tmp_path, "<!-- table:demo split val -->\n<!-- /table -->\n")
    results = tmp_path / "results"
    (results / "demo").mkdir(parents=True)
    new = (
        (tables / "demo/summary.csv")
        .read_text()
        .replace("demo,RbL,logmel,val,all,spearman,0.7", "demo,RbL,logmel,val,all,spearman,0.1")
    )
    (results / "demo/summary.csv").write_text(new)
    assert readme_tables.main(["--readme", str(readme), "--tables", str(tables), "--from-results", str(results)]) == 0
    assert (tables / "demo/summary.csv").read_text() == new
    text = readme.read_text()
    assert "##### val: all levels" in text and "| RbL | 3 | 0.178 ± 0.003 (+0.150) |" in text


def _history(scores):
    return pd.DataFrame({"epoch": range(len(scores)), "loss": np.nan, "val_silhouette": scores, "spread": 1.0})


def test_kept_epoch_is_the_first_best_validation_epoch():
    table = kept_epochs(
        {
            ("RbL", 1): _history([0.1, 0.3, 0.3, 0.2]),
            ("RbL", 0): _history([np.nan, 0.2, 0.1]),
            ("QuadL", 0): _history([np.nan, np.nan]),
        }
    )
    assert table.to_dict("records") == [
        {"experiment": "QuadL", "seed": 0, "epoch": -1},
        {"experiment": "RbL", "seed": 0, "epoch": 1},
        {"experiment": "RbL", "seed": 1, "epoch": 1},
    ]


def test_from_results_writes_the_kept_epochs_of_every_run(tmp_path):
    readme, tables = _setup(tmp_path, "<!-- table:demo average val epochs -->\n<!-- /table -->\n")
    results = tmp_path / "results"
    (results / "demo").mkdir(parents=True)
    shutil.copy(tables / "demo/summary.csv", results / "demo/summary.csv")
    rng = np.random.default_rng(0)
    best = {}
    for experiment in ("QuadL", "RbL", "RbL_unc", "RbL_RdmHierarchy"):
        for seed in range(3):
            scores = rng.random(40)
            best[(experiment, seed)] = int(np.argmax(scores))
            folder = results / "demo/models" / experiment / f"seed{seed}"
            folder.mkdir(parents=True)
            _history(scores).to_csv(folder / "history.csv", index=False)
    args = ["--readme", str(readme), "--tables", str(tables)]
    assert readme_tables.main(args + ["--from-results", str(results)]) == 0
    text = readme.read_text()
    assert "| experiment | seeds | family silhouette | sound silhouette | average | kept epoch per seed |" in text
    assert "| InitEmb | 1 | 0.440 | 0.769 | 0.605 | - |" in text  # no training, no epochs
    row = next(line for line in text.splitlines() if line.startswith("| RbL | "))
    assert row.endswith(" | " + ", ".join(str(best[("RbL", s)]) for s in range(3)) + " |")
    assert readme_tables.main(args + ["--check"]) == 0  # the copied files render the same again
    (tables / "demo/kept_epochs.csv").unlink()
    assert readme_tables.main(args + ["--check"]) == 2  # the marker needs the file


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- table:demo -->\n<!-- /table -->\n", "line 1: marker 'table:demo' is not 'table:DATASET KIND'"),
        ("x\n<!-- table:demo split -->\n<!-- /table -->\n", "line 2: marker"),
        ("<!-- table:../demo silhouette -->\n<!-- /table -->\n", "dataset name '../demo'"),
        ("a\n\n<!-- table:demo silhouette -->\n| t |\n", "line 3: table marker without its '<!-- /table -->'"),
        ("<!-- table:demo split train -->\n<!-- /table -->\n", "no split 'train' in the summary table"),
        ("<!-- table:missing silhouette -->\n<!-- /table -->\n", "missing/summary.csv: no such file"),
        ("<!-- table:demo average val epoch -->\n<!-- /table -->\n", "KIND one of"),
        ("<!-- table:demo average val epochs -->\n<!-- /table -->\n", "demo/kept_epochs.csv: no such file"),
    ],
)
def test_bad_markers_and_missing_tables_are_named(tmp_path, capsys, text, message):
    readme, tables = _setup(tmp_path, text)
    assert readme_tables.main(["--readme", str(readme), "--tables", str(tables)]) == 2
    assert message in capsys.readouterr().err
    assert readme.read_text() == text


def test_read_summary_names_the_bad_file_and_line(tmp_path):
    path = tmp_path / "summary.csv"
    lines = (REPO / "docs/results/demo/summary.csv").read_text().splitlines()
    assert lines[2].startswith("demo,InitEmb,logmel,val,family,knn_acc,1.0,")
    path.write_text("\n".join(lines[:2] + [lines[2].replace(",1.0,", ",one,", 1)] + lines[3:]) + "\n")
    with pytest.raises(InputError, match=r"summary.csv, line 3: column mean holds 'one'"):
        read_summary(path)
    path.write_text("dataset,experiment\nd,e\n")
    with pytest.raises(InputError, match="missing column.*extractor"):
        read_summary(path)
