"""The `rbl` command: one subcommand per pipeline stage, reading files and writing files.

Every stage runs without Snakemake; the workflow's rules call these. Outputs are written
atomically. Bad input ends with `error: <file/row/key>: <what to do>` and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import math
import sys
import typing
from pathlib import Path

import numpy as np
import pandas as pd

from rbl import __version__
from rbl.atomic import atomic_path, write_text
from rbl.errors import InputError

log = logging.getLogger("rbl")


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    """Write a table atomically; a cell holding a carriage return is refused, naming the row.

    Python's csv writer quotes a cell only for the line terminator ("\\n"), so a lone "\\r" would be
    written bare and split the row in two on reading. Inputs refuse such names where they enter
    (ingest); this keeps any other path (e.g. converted tables) from writing a broken file.
    """
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        cells = frame[column].astype(str)
        bad = cells.str.contains("\r", regex=False).to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise InputError(f"{path}: row {row + 2}, column '{column}': {cells.iloc[row]!r} holds a carriage "
                             "return, which the table cannot carry; remove it from the input")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _read_table(path: str) -> pd.DataFrame:
    from rbl.data import read_csv

    return read_csv(path)


def _labels(manifest_path: str, taxonomy_path: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    from rbl.data import level_codes, load_taxonomy

    taxonomy = load_taxonomy(taxonomy_path)
    manifest = _read_table(manifest_path)
    return manifest, level_codes(manifest, taxonomy), list(taxonomy.levels)


def _split_of(manifest: pd.DataFrame, splits_path: str) -> np.ndarray:
    """The split of every manifest row; `skipped` rows (undecodable clips) belong to none."""
    from rbl.data import SKIPPED, SPLITS

    splits = _read_table(splits_path)
    if "file" not in splits.columns or "split" not in splits.columns:
        raise InputError(f"{splits_path}: needs the columns file and split; rerun the split stage")
    if list(splits["file"]) != list(manifest["file"]):
        raise InputError(f"{splits_path}: rows do not match the manifest; rerun the split stage")
    split = splits["split"].to_numpy()
    unknown = sorted(set(split) - set(SPLITS) - {SKIPPED})
    if unknown:
        raise InputError(f"{splits_path}: unknown split name(s) {unknown}; rerun the split stage")
    return split


STALE_SPLITS = ("they were skipped at extraction but the splits predate it: rerun the split stage with "
                "--skipped (the workflow does this itself)")


def _require_finite(values: np.ndarray, split: np.ndarray, manifest: pd.DataFrame, path: str,
                    why: str = STALE_SPLITS) -> None:
    """Rows that a split uses must hold numbers: a NaN row is a skipped clip the splits do not know of."""
    from rbl.data import SPLITS

    bad = np.isin(split, SPLITS) & ~np.isfinite(values).all(axis=1)
    if bad.any():
        files = list(manifest["file"][bad][:3])
        raise InputError(f"{path}: {int(bad.sum())} clip(s) in the splits hold NaN or Inf, e.g. {files}; {why}")


def _load_array(path: str, key: str | None = None) -> np.ndarray:
    """An array from a .npy (or one entry of a .npz) of ours; never unpickles anything."""
    try:
        data = np.load(path, allow_pickle=False)
        if key is None:
            return data
        with data:
            return data[key]
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; rerun the stage that writes it") from None
    except KeyError:
        raise InputError(f"{path}: has no '{key}' array; rerun the stage that writes it") from None
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable numpy file ({err}); rerun the stage that writes it") from None


def _load_checkpoint(path: str, device):
    """A training checkpoint, loaded with weights_only=True: tensors and plain containers, no code."""
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint not found; rerun training") from None
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: refused: the checkpoint holds more than weights ({first}); only files "
                         "written by `rbl train` are loaded: retrain, and never load checkpoints from "
                         "untrusted sources") from None
    except (RuntimeError, ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable checkpoint ({err}); rerun training") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "model"} <= set(checkpoint):
        raise InputError(f"{path}: not a checkpoint of `rbl train` (no state_dict/model); rerun training")
    return checkpoint


# --- stages ---------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> None:
    from rbl.demo import generate

    generate(Path(args.out), clips_per_class=args.clips_per_class, seed=args.seed)
    log.info("demo dataset written to %s", args.out)


def cmd_corpus(args: argparse.Namespace) -> None:
    from rbl.corpora import CORPORA, DEFAULT_CLIPS_PER_CLASS

    clips = args.clips_per_class if args.clips_per_class is not None else DEFAULT_CLIPS_PER_CLASS[args.kind]
    CORPORA[args.kind](Path(args.out), clips_per_class=clips, seed=args.seed, progress=not args.quiet)
    log.info("%s corpus written to %s", args.kind, args.out)


def cmd_convert_authors(args: argparse.Namespace) -> None:
    from rbl.convert import AUTHORS_SPLITS, authors_csv

    folder = Path(args.dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found; it should hold the authors' train.csv and val.csv, "
                         "optionally test.csv (set dataset.authors_csv_dir in the config)")
    # train and val are required (a missing one is named by _read_table); test.csv is optional.
    tables = {name: _read_table(folder / f"{name}.csv") for name in AUTHORS_SPLITS
              if name != "test" or (folder / "test.csv").is_file()}
    if "test" not in tables:
        log.info("%s has no test.csv: no test_seen clips from the authors' split", folder)
    annotations, taxonomy = authors_csv(tables)
    _write_csv(taxonomy, args.out_taxonomy)
    _write_csv(annotations, args.out_annotations)
    log.info("converted %d clips (%s) from %s", len(annotations),
             annotations["split"].value_counts().to_dict(), folder)


def cmd_ingest(args: argparse.Namespace) -> None:
    from rbl.data import AUDIO_SUFFIXES, build_manifest, load_taxonomy, unlisted_files
    from rbl.fingerprint import cached_hashes, content_hashes

    taxonomy = load_taxonomy(args.taxonomy)
    if bool(args.audio_root) == bool(args.features_dir):
        raise InputError("give exactly one of --audio-root (audio) and --features-dir (precomputed features)")
    root = Path(args.audio_root or args.features_dir)
    if not root.is_dir():
        key = "audio_root" if args.audio_root else "features_dir"
        raise InputError(f"{root}: not a folder; set dataset.{key} in the config")
    suffix = None if args.audio_root else ".npy"
    manifest = build_manifest(_read_table(args.annotations), taxonomy, root, args.annotations, suffix)
    paths = list(manifest["path"])
    try:
        digests = (cached_hashes(paths, args.hashes, progress=not args.quiet) if args.hashes
                   else content_hashes(paths, {}, progress=not args.quiet)[0])
    except OSError as err:  # an unreadable clip: name it with its annotation line
        line = f" line {paths.index(err.filename) + 2}" if err.filename in paths else ""
        raise InputError(f"{args.annotations}{line}: {err.filename} cannot be read ({err.strerror or err}); "
                         "check the file and its permissions") from None
    manifest.insert(2, "sha256", digests)
    start = len(str(root).rstrip("/")) + 1  # manifest paths are root/<relative path>
    listed = {p[start:] for p in manifest["path"]}
    unlisted = unlisted_files(root, listed, AUDIO_SUFFIXES if suffix is None else {suffix})
    if unlisted:
        log.warning("%d file(s) under %s are not in %s and are not used, e.g. %s",
                    len(unlisted), root, args.annotations, ", ".join(unlisted[:3]))
    incomplete = int((manifest[taxonomy.levels[-1]] == "").sum())
    log.info("manifest: %d clips, %d with incomplete labels, %d levels (%s)",
             len(manifest), incomplete, taxonomy.depth, ", ".join(taxonomy.levels))
    _write_csv(taxonomy.to_frame(), args.out_taxonomy)
    _write_csv(manifest, args.out_manifest)


def cmd_split(args: argparse.Namespace) -> None:
    from rbl.data import load_taxonomy
    from rbl.split import make_splits

    taxonomy = load_taxonomy(args.taxonomy)
    fractions = {}
    for item in args.fractions.split(","):
        name, _, value = item.partition("=")
        try:
            fractions[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--fractions: '{item}' is not name=number "
                             "(e.g. train=0.6,val=0.2,test_seen=0.2)") from None
    manifest = _read_table(args.manifest)
    skipped: set[str] = set()
    if args.skipped:
        table = _read_table(args.skipped)
        if "file" not in table.columns:
            raise InputError(f"{args.skipped}: no 'file' column; rerun feature extraction")
        skipped = set(table["file"])
        if skipped:
            log.warning("%d clip(s) skipped at extraction are left out of every split (see %s)",
                        len(skipped), args.skipped)
    splits = make_splits(manifest, list(taxonomy.levels), args.unseen_per_parent, fractions, args.seed,
                         skipped=skipped, source=args.manifest)
    log.info("splits: %s", splits["split"].value_counts().to_dict())
    _write_csv(splits, args.out)


SKIPPED_COLUMNS = ["file", "reason"]


def _save_features(feats: np.ndarray, info: dict, out: str, info_path: str) -> None:
    with atomic_path(out) as tmp:
        np.save(tmp, feats)
    write_text(info_path, json.dumps(info, indent=2))


def _write_skipped(clips: list[dict], path: str, info: dict, keep_list: bool) -> None:
    """skipped.csv (file, reason: one row per clip left out); the record gets its path.

    A shard's record keeps the list too (gather merges it); the gathered record keeps only the
    count `skipped` and the path `skipped_file`.
    """
    _write_csv(pd.DataFrame(clips, columns=SKIPPED_COLUMNS), path)
    if not keep_list:
        info.pop("skipped_clips", None)
    info["skipped_file"] = path
    if clips:
        log.warning("%d clip(s) could not be used and were skipped; listed in %s", len(clips), path)


def cmd_extract(args: argparse.Namespace) -> None:
    from rbl.features import ExtractSettings, extract, load_precomputed
    from rbl.shards import shard_rows
    from rbl.device import resolve_device

    manifest = _read_table(args.manifest)
    rows = shard_rows(len(manifest), args.shard, args.shards)
    paths, digests = list(manifest["path"].iloc[rows]), list(manifest["sha256"].iloc[rows])
    if args.extractor == "precomputed":
        failed: dict[int, str] = {}
        feats = load_precomputed(paths, args.on_error, failed)
        info = {"extractor": "precomputed", "requested": "precomputed", "reason": "dataset.features_dir",
                "n_clips": len(feats), "computed": 0, "from_cache": 0, "skipped": len(failed),
                "on_error": args.on_error,
                "skipped_clips": [{"row": i, "path": paths[i], "reason": why} for i, why in sorted(failed.items())]}
    else:
        settings = ExtractSettings(extractor=args.extractor, weights_dir=args.weights_dir,
                                   download=args.download, final_relu=args.final_relu, verify=args.verify,
                                   batch_clips=args.batch_clips, workers=args.workers,
                                   device=str(resolve_device(args.device)), on_error=args.on_error,
                                   precision=args.precision)
        feats, info = extract(paths, digests, settings, Path(args.cache_dir), progress=not args.quiet)
    # Name skipped clips as the manifest does (its 'file'), for skipped.csv and the split stage.
    files = list(manifest["file"].iloc[rows])
    info["skipped_clips"] = [{"file": files[c["row"]], "reason": c["reason"]} for c in info["skipped_clips"]]
    info["shard"] = f"{args.shard + 1} of {args.shards}"
    if args.skipped:
        _write_skipped(info["skipped_clips"], args.skipped, info, keep_list=True)
    _save_features(feats, info, args.out, args.info)


def cmd_gather(args: argparse.Namespace) -> None:
    from rbl.shards import merge_infos

    if len(args.parts) != len(args.infos):
        raise InputError("gather: give one --infos file per --parts file, in the same order")
    feats = np.concatenate([_load_array(p) for p in args.parts])
    n = len(_read_table(args.manifest))
    if len(feats) != n:
        raise InputError(f"gather: the shards hold {len(feats)} clips, the manifest {n}; rerun extraction")
    info = merge_infos([json.loads(Path(p).read_text()) for p in args.infos])
    if info["n_clips"] != n:
        raise InputError(f"gather: the shard records count {info['n_clips']} clips, the manifest {n}; "
                         "rerun extraction")
    log.info("features: %s; %d clip(s) computed, %d from the cache, %d skipped, in %d shard(s)",
             info["extractor"], info["computed"], info["from_cache"], info["skipped"], len(args.parts))
    if args.skipped:
        _write_skipped(info["skipped_clips"], args.skipped, info, keep_list=False)
    _save_features(feats, info, args.out, args.info)


def cmd_normalise(args: argparse.Namespace) -> None:
    from rbl import normalise

    from rbl.data import SKIPPED

    feats = _load_array(args.features)
    manifest = _read_table(args.manifest)
    split = _split_of(manifest, args.splits)
    if feats.ndim != 2 or len(feats) != len(manifest):
        raise InputError(f"{args.features}: shape {feats.shape} does not match the manifest's {len(manifest)} "
                         "clips; rerun extraction")
    _require_finite(feats, split, manifest, args.features)
    train = split == "train"
    if not train.any():
        raise InputError(f"{args.splits}: no training clips to take statistics from; rerun the split stage")
    mean, std = normalise.fit(feats[train])
    with atomic_path(args.out) as tmp:
        np.savez(tmp, x=normalise.apply(feats, mean, std), mean=mean, std=std)
    log.info("normalised %d clips with statistics of %d training clips (%d skipped clip(s) left as NaN)",
             len(feats), int(train.sum()), int((split == SKIPPED).sum()))


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from rbl.experiment import TrainSettings
    from rbl.device import resolve_device
    from rbl.train import ResumeFile, fit

    from rbl.data import load_taxonomy
    from rbl.model import embedding_size
    from rbl.taxonomy import shuffle_leaves

    if args.resume and args.checkpoint_every is None:
        raise InputError("train: --resume needs --checkpoint-every (the epochs between saves of the state; "
                         "the workflow passes train.checkpoint_every)")
    torch.set_num_threads(args.threads)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)}
    settings = TrainSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    manifest, labels, _ = _labels(args.manifest, args.taxonomy)
    split = _split_of(manifest, args.splits)
    x = _load_array(args.features, "x")
    if settings.out_dim == "auto":
        leaves = len(load_taxonomy(args.taxonomy).leaf_codes())
        settings = dataclasses.replace(settings, out_dim=embedding_size(leaves, x.shape[1]))
        log.info("out_dim auto: %d-d embeddings for %d leaves", settings.out_dim, leaves)
    if settings.hierarchy == "random":
        # The control: train (and early-stop) on a shuffled tree; evaluation uses the true one.
        leaves = load_taxonomy(args.taxonomy).leaf_codes()
        labels = shuffle_leaves(labels, leaves, np.random.default_rng([args.seed, 1]))
    if len(x) != len(manifest):
        raise InputError(f"{args.features}: {len(x)} rows, the manifest {len(manifest)}; rerun normalise")
    _require_finite(x, split, manifest, args.features)
    device = resolve_device(args.device)
    log.info("training %s on %s, seed %d", settings, device, args.seed)
    train, val = split == "train", split == "val"
    resume = ResumeFile(Path(args.resume), args.checkpoint_every) if args.resume else None
    checkpoint, history = fit(x[train], labels[train], x[val], labels[val], settings, args.seed, device,
                              progress=not args.quiet, collapse_spread=args.collapse_spread, resume=resume)
    checkpoint["settings"] = dataclasses.asdict(settings)
    checkpoint["device"] = str(device)
    log.info("best epoch %d, validation mean silhouette %.4f", checkpoint["epoch"], checkpoint["val_silhouette"])
    if checkpoint["epoch"] == 0:
        log.warning("no epoch improved on the untrained model, which is the one kept: see the loss and spread "
                    "in %s (a collapse, too few pairs per batch, or a learning rate too high)", args.history)
    _write_csv(history, args.history)
    with atomic_path(args.out) as tmp:
        torch.save(checkpoint, tmp)
    if resume:
        resume.remove()


def cmd_embed(args: argparse.Namespace) -> None:
    import torch

    from rbl.device import resolve_device
    from rbl.train import load_model

    x = _load_array(args.features, "x")
    if args.checkpoint:
        device = resolve_device(args.device)
        checkpoint = _load_checkpoint(args.checkpoint, device)
        try:
            model = load_model(checkpoint, device)
        except (KeyError, TypeError, RuntimeError) as err:
            raise InputError(f"{args.checkpoint}: does not fit the embedding model ({err}); rerun training") from None
        if model.config["in_dim"] != x.shape[1]:
            raise InputError(f"{args.checkpoint}: trained on {model.config['in_dim']}-d features, "
                             f"{args.features} holds {x.shape[1]}-d ones; rerun training")
        with torch.no_grad():
            emb = model(torch.as_tensor(x, dtype=torch.float32, device=device)).cpu().numpy()
    else:
        emb = x  # InitEmb: the normalised input features themselves.
    with atomic_path(args.out) as tmp:
        np.savez(tmp, embeddings=emb.astype(np.float32))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from rbl.evaluation import evaluate_embeddings

    manifest, labels, levels = _labels(args.manifest, args.taxonomy)
    from rbl.data import SKIPPED

    split = _split_of(manifest, args.splits)
    emb = _load_array(args.embeddings, "embeddings")
    if len(emb) != len(manifest):
        raise InputError(f"{args.embeddings}: {len(emb)} rows, the manifest {len(manifest)}; rerun embed")
    _require_finite(emb, split, manifest, args.embeddings,
                    "either the model diverged (lower the experiment's lr) or the clips were skipped at "
                    "extraction after the splits were made (rerun the split stage)")
    info = json.loads(Path(args.features_info).read_text())
    table = evaluate_embeddings(emb, labels, split, levels, seed=args.seed)
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in table.to_dict("records")]
    result = {"dataset": args.dataset, "experiment": args.experiment, "seed": args.seed,
              "extractor": info["extractor"], "rbl_version": __version__,
              "skipped": int((split == SKIPPED).sum()), "metrics": rows}
    write_text(args.out, json.dumps(result, indent=2))


def _class_names(taxonomy_path: str) -> tuple[list[list[str]], list[str]]:
    from rbl.data import load_taxonomy

    taxonomy = load_taxonomy(taxonomy_path)
    names = [[node[-1] for node in taxonomy.nodes(level)] for level in range(taxonomy.depth)]
    return names, list(taxonomy.levels)


def _save_figure(fig, out: str) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def cmd_plot_embeddings(args: argparse.Namespace) -> None:
    from rbl.plots import plot_embeddings

    manifest, labels, _ = _labels(args.manifest, args.taxonomy)
    split = _split_of(manifest, args.splits)
    emb = _load_array(args.embeddings, "embeddings")
    names, levels = _class_names(args.taxonomy)
    mask = split == args.split
    if mask.any():
        fig = plot_embeddings(emb[mask], labels[mask], names, levels, args.title)
    else:  # e.g. a dataset without a test split: say so in the picture rather than fail the run
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, f"{args.title}\nsplit '{args.split}' holds no clips", ha="center", va="center")
        ax.set_axis_off()
    _save_figure(fig, args.out)


def cmd_plot_training(args: argparse.Namespace) -> None:
    from rbl.plots import plot_training_curves

    if len(args.histories) != len(args.names):
        raise InputError("plot-training: give one --names entry per --histories file")
    histories = {name: pd.read_csv(path) for name, path in zip(args.names, args.histories)}
    _save_figure(plot_training_curves(histories, args.collapse_spread), args.out)


def cmd_summarise(args: argparse.Namespace) -> None:
    from rbl.plots import plot_metric_bars
    from rbl.summary import collapse_markdown, collapsed_runs, long_table, markdown, summarise

    if len(args.histories) != len(args.names):
        raise InputError("summarise: give one --names entry per --histories file")
    results = [json.loads(Path(p).read_text()) for p in args.metrics]
    long = long_table(results)
    table = summarise(long)
    _write_csv(long, args.out_long)
    _write_csv(table, args.out_csv)
    text = markdown(table, title=args.title)
    if args.histories:
        histories = {name: pd.read_csv(path) for name, path in zip(args.names, args.histories)}
        collapsed = collapsed_runs(histories, args.collapse_spread)
        for run in collapsed.itertuples():
            log.warning("%s: the training embeddings collapsed (spread %.4f at epoch %d, below %g)",
                        run.run, run.lowest_spread, run.first_epoch, args.collapse_spread)
        text += "\n" + collapse_markdown(collapsed, len(histories), args.collapse_spread)
    write_text(args.out_md, text)
    _save_figure(plot_metric_bars(table), args.out_plot)
    print(text)


def cmd_provenance(args: argparse.Namespace) -> None:
    from rbl.provenance import provenance, to_markdown

    manifest = _read_table(args.manifest)
    info = json.loads(Path(args.features_info).read_text())
    config = json.loads(args.config)
    record = provenance(config, manifest, info)
    write_text(args.out_json, json.dumps(record, indent=2))
    write_text(args.out_md, to_markdown(record))


# --- parser ---------------------------------------------------------------------------------

def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _int_or_auto(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def _finite(text: str) -> float:
    """A float flag's value; nan and inf are refused (they would pass every bound and poison training)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _add_train_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainSettings field; tuples take several values (none for an empty one)."""
    from rbl.experiment import TrainSettings

    hints = typing.get_type_hints(TrainSettings)
    for field in dataclasses.fields(TrainSettings):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        kind = _finite if kind is float else kind
        if kind == int | str:  # out_dim: a number or "auto"
            parser.add_argument(flag, type=_int_or_auto, default=field.default)
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(flag, type=_finite if item is float else item, nargs="*", default=field.default)
        else:
            parser.add_argument(flag, type=kind, default=field.default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rbl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rbl {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="stage")

    p = sub.add_parser("demo", help="generate the synthetic demo dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--clips-per-class", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.set_defaults(func=cmd_demo)

    from rbl.corpora import CORPORA

    p = sub.add_parser("corpus", help="generate a realistic benchmark corpus (fluidsynth instruments, espeak-ng speech)")
    p.add_argument("--kind", required=True, choices=sorted(CORPORA),
                   help="instruments: GM family -> instrument; speech: language family -> language -> voice")
    p.add_argument("--out", required=True, help="folder for audio/, annotations.csv and taxonomy.csv")
    p.add_argument("--clips-per-class", type=int, default=None, help="clips per leaf (default: instruments 32, speech 16)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("convert-authors", help="the RbL authors' example-data CSVs -> annotations and taxonomy")
    p.add_argument("--dir", required=True, help="folder with train.csv, val.csv (and test.csv)")
    p.add_argument("--out-annotations", required=True)
    p.add_argument("--out-taxonomy", required=True)
    p.set_defaults(func=cmd_convert_authors)

    p = sub.add_parser("ingest", help="validate taxonomy and annotations, hash audio, write the manifest")
    p.add_argument("--taxonomy", required=True)
    p.add_argument("--annotations", required=True)
    p.add_argument("--audio-root", default="", help="folder of the audio files")
    p.add_argument("--features-dir", default="", help="or: folder of one precomputed .npy per clip")
    p.add_argument("--out-manifest", required=True)
    p.add_argument("--out-taxonomy", required=True)
    p.add_argument("--hashes", default="",
                   help="table of content hashes by stat signature: only new or changed files are hashed")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("split", help="train/val/test_seen/test_unseen, holding out fine classes")
    p.add_argument("--manifest", required=True)
    p.add_argument("--taxonomy", required=True)
    p.add_argument("--unseen-per-parent", type=int, required=True)
    p.add_argument("--fractions", required=True, help="e.g. train=0.6,val=0.2,test_seen=0.2")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--skipped", default="", help="skipped.csv of extraction: these clips get the split 'skipped'")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("extract", help="clip features (VGGish or log-mel), with the per-clip cache")
    p.add_argument("--manifest", required=True)
    p.add_argument("--extractor", choices=("auto", "vggish", "logmel", "precomputed"), required=True)
    p.add_argument("--weights-dir", required=True)
    p.add_argument("--download", type=_bool, required=True)
    p.add_argument("--final-relu", type=_bool, required=True)
    p.add_argument("--verify", type=_bool, required=True, help="check the weights' sha256 prefixes")
    p.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="the VGGish CNN's arithmetic (autocast); frontend and PCA stay float32")
    p.add_argument("--batch-clips", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--info", required=True)
    p.add_argument("--shard", type=int, default=0, help="this job's shard, counted from 0")
    p.add_argument("--shards", type=int, default=1, help="number of shards the manifest is cut into")
    p.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="a clip that cannot be decoded: stop with its name, or skip it (NaN row, listed)")
    p.add_argument("--skipped", default="", help="also write the skipped clips (file, reason) to this CSV")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("gather", help="join extraction shards into one feature matrix")
    p.add_argument("--manifest", required=True)
    p.add_argument("--parts", nargs="+", required=True)
    p.add_argument("--infos", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--info", required=True)
    p.add_argument("--skipped", default="", help="write the skipped clips of all shards (file, reason) here")
    p.set_defaults(func=cmd_gather)

    p = sub.add_parser("normalise", help="z-score features with training-split statistics")
    p.add_argument("--features", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_normalise)

    p = sub.add_parser("train", help="train one embedding model, early-stopped on validation")
    for name in ("features", "manifest", "taxonomy", "splits", "out", "history"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--collapse-spread", type=_finite, default=0.0,
                   help="warn when the training embeddings' spread (mean pairwise distance) falls below this")
    p.add_argument("--resume", default=None,
                   help="file for the run's state: saved there periodically, continued from on a rerun of the "
                        "same run, removed once the outputs are written (default: none, no saved state)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None,
                   help="with --resume: save the state every this many epochs")
    _add_train_settings(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", help="embed every clip with a checkpoint (none: InitEmb)")
    p.add_argument("--features", required=True)
    p.add_argument("--checkpoint", default="")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("evaluate", help="metrics per taxonomy level and split")
    for name in ("embeddings", "manifest", "taxonomy", "splits", "features-info", "dataset", "experiment", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plot-embeddings", help="picture of one split's embeddings")
    for name in ("embeddings", "manifest", "taxonomy", "splits", "split", "title", "out"):
        p.add_argument(f"--{name}", required=True)
    p.set_defaults(func=cmd_plot_embeddings)

    p = sub.add_parser("plot-training", help="loss and validation silhouette per epoch")
    p.add_argument("--histories", nargs="+", required=True)
    p.add_argument("--names", nargs="+", required=True, help="one 'experiment/seed' label per history")
    p.add_argument("--collapse-spread", type=_finite, default=0.1, help="shade spreads below this as collapse")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_plot_training)

    p = sub.add_parser("summarise", help="tables and a bar chart over experiments and seeds")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--title", default="Results")
    p.add_argument("--histories", nargs="*", default=[], help="history.csv of every trained run")
    p.add_argument("--names", nargs="*", default=[], help="one 'experiment/seed' label per history")
    p.add_argument("--collapse-spread", type=_finite, default=0.1,
                   help="report runs whose embedding spread fell below this")
    p.add_argument("--out-long", required=True, help="metrics.csv: one row per seed, split, level, metric")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-plot", required=True)
    p.set_defaults(func=cmd_summarise)

    p = sub.add_parser("provenance", help="config, versions, dataset hash, extractor and device of a run")
    p.add_argument("--config", required=True, help="the run's config as JSON")
    p.add_argument("--manifest", required=True)
    p.add_argument("--features-info", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(func=cmd_provenance)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="rbl %(levelname)s: %(message)s", stream=sys.stderr)
    if not sys.stderr.isatty():
        # A log file (Snakemake's jobs): a progress line every 30 s, not every update (a long
        # training filled its log with bars). tqdm reads TQDM_* from the environment; a user's own wins.
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    try:
        args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the stage cannot read or write: one line naming it, no traceback
        if err.filename is None:
            raise
        print(f"error: {err.filename}: {err.strerror or err}; check the file, its folder and their permissions",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
