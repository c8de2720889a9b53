"""The whole-clip VGGish frontend path: every clip framed in one frontend call, then pooled.

Extraction used this until it went through pieces of bounded size (rbl.features, rbl.vggish.frontend
`frame_pieces` / `pieces_logmel`), because a whole hour-long clip needs gigabytes of frames. It stays
here, outside the package, as the reference the piecewise path must equal
(tests/test_extract_chunked.py, tests/test_vggish_frontend.py) and as the baseline of
benchmarks/extract_memory.py and extract_speed.py.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch
from torch import Tensor

from rbl.logmel import EXAMPLE_FRAMES, N_CEPSTRA, N_MELS, examples_in, frames_in
from rbl.vggish.frontend import _check_1d, _frontend_like


def _clip_index(counts: list[int], device: torch.device) -> Tensor:
    return torch.repeat_interleave(torch.arange(len(counts), device=device), torch.tensor(counts, device=device))


def clip_examples(waveforms: list[Tensor]) -> tuple[Tensor, Tensor]:
    """VGGish examples of many clips in one frontend call: (M, 96, 64) and the clip index (M,) of each.

    Clip slices start every 15360 samples (96 hops, the published 0.96 s example hop) and span 15600
    samples; a clip shorter than that is zero-padded to yield exactly one example. Example j of a
    clip is frames 96j..96j+95 of the whole clip, so the clip is framed once.
    """
    if not waveforms:
        return torch.zeros(0, EXAMPLE_FRAMES, N_MELS), torch.zeros(0, dtype=torch.long)
    _check_1d(waveforms)
    counts = [examples_in(w.shape[0]) for w in waveforms]
    frontend = _frontend_like(waveforms)
    logmel = frontend.clip_logmel(waveforms, [EXAMPLE_FRAMES * n for n in counts])
    return logmel.view(-1, EXAMPLE_FRAMES, N_MELS), _clip_index(counts, frontend.window.device)


def clip_logmel_stats(waveforms: list[Tensor]) -> Tensor:
    """Weightless clip features (B, 336): per clip and log-mel band, the mean and population std of all
    its frames L[t], then the mean of |d_t| and the population std of d_t, d_t = L[t+1] - L[t] over
    consecutive frames of the clip (0 for a clip of one frame); then the same four of the frames'
    first 20 cepstral coefficients (scipy's orthonormal DCT-II of the bands).

    Clips shorter than one example are zero-padded to 15600 samples as in `clip_examples`. All frames of
    all clips go through one frontend call; per-clip sums use index_add (differences across two clips
    left out).
    """
    if not waveforms:
        return torch.zeros(0, 4 * (N_MELS + N_CEPSTRA))
    _check_1d(waveforms)
    frontend = _frontend_like(waveforms)
    counts = [frames_in(w.shape[0]) for w in waveforms]
    logmel = frontend.clip_logmel(waveforms, counts)
    clip_index = _clip_index(counts, frontend.window.device)
    dct = torch.from_numpy(scipy.fft.dct(np.eye(N_MELS), type=2, norm="ortho", axis=1)[:, :N_CEPSTRA])
    cepstra = (logmel.double() @ dct.to(logmel.device)).to(logmel.dtype)
    same = clip_index[1:] == clip_index[:-1]
    delta_index = clip_index[1:][same]
    pairs = [max(k - 1, 1) for k in counts]  # (a clip of one frame has no pair: sums of 0 over 1)

    def four(frames: Tensor) -> list[Tensor]:
        mean, std = _mean_std(frames, clip_index, counts)
        delta = (frames[1:] - frames[:-1])[same]
        abs_mean, _ = _mean_std(delta.abs(), delta_index, pairs)
        _, delta_std = _mean_std(delta, delta_index, pairs)
        return [mean, std, abs_mean, delta_std]

    return torch.cat(four(logmel) + four(cepstra), dim=1)


def _mean_std(rows: Tensor, index: Tensor, counts: list[int]) -> tuple[Tensor, Tensor]:
    """Per group of rows (group `index[r]` of row r; `counts[g]` divides group g's sums): the mean and
    population std of each column, two-pass."""
    n = torch.tensor(counts, device=rows.device, dtype=rows.dtype)[:, None]
    zeros = rows.new_zeros(len(counts), rows.shape[1])
    mean = zeros.index_add(0, index, rows) / n
    var = zeros.index_add(0, index, (rows - mean[index]) ** 2) / n
    return mean, var.sqrt()
