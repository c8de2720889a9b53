"""`rbl embed`: every clip embedded with a trained checkpoint (none: InitEmb, the features themselves)."""

from __future__ import annotations

import argparse

import numpy as np

from rbl.atomic import atomic_path
from rbl.errors import InputError
from rbl.io import load_array, load_checkpoint

HELP = "embed every clip with a checkpoint (none: InitEmb)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", required=True, help="normalised features of normalise (.npz)")
    p.add_argument(
        "--checkpoint", default="", help="checkpoint of train (default: none, the features are the embeddings)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:<n> or auto (default: cpu)")
    p.add_argument("--out", required=True, help=".npz to write: embeddings, one row per clip")


def run(args: argparse.Namespace) -> None:
    import torch

    from rbl.device import resolve_device
    from rbl.train import load_model

    x = load_array(args.features, "x")
    if args.checkpoint:
        device = resolve_device(args.device)
        checkpoint = load_checkpoint(args.checkpoint, device)
        try:
            model = load_model(checkpoint, device)
        except (KeyError, TypeError, RuntimeError) as err:
            raise InputError(f"{args.checkpoint}: does not fit the embedding model ({err}); rerun training") from None
        if model.config["in_dim"] != x.shape[1]:
            raise InputError(
                f"{args.checkpoint}: trained on {model.config['in_dim']}-d features, "
                f"{args.features} holds {x.shape[1]}-d ones; rerun training"
            )
        with torch.no_grad():
            emb = model(torch.as_tensor(x, dtype=torch.float32, device=device)).cpu().numpy()
    else:
        emb = x  # InitEmb: the normalised input features themselves.
    with atomic_path(args.out) as tmp:
        np.savez(tmp, embeddings=emb.astype(np.float32))
