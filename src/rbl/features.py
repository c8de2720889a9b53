"""Clip-level features computed from audio: decoding in parallel threads, batched extraction.

Extractors: `vggish` (the published VGGish CNN + PCA, mean-pooled over the clip's 0.96 s
examples: 128 values) and `logmel` (weightless: the same log-mel frontend, 336 values. Per band, the
mean and std over time of the frames L[t], then the mean of |d_t| and the std of d_t, their
frame-to-frame differences d_t = L[t+1] - L[t] over the whole clip: [mean (64), std (64),
mean |d| (64), std d (64)]; then the same four statistics of the frames' first 20 cepstral
coefficients (MFCCs, rbl.logmel.cepstral_matrix), 80 values; population stds. A clip of one frame
has no difference: its delta statistics are 0; extraction pads every clip to one 0.96 s example,
96 frames, so it does not arise there). `auto` takes VGGish when its weights are present or can be
downloaded, else logmel, and says so (rbl.extraction.choose_extractor).

`rbl.extraction.extract` runs an extraction: it serves the clips the per-clip cache (rbl.cache)
holds and calls `compute` here for the rest. `logmel` computes its frames with numpy (rbl.logmel)
and never imports torch; `vggish` runs the torch frontend and CNN (rbl.vggish), imported then.
The cache's key holds the source of this module's import closure: any edit to the decoding,
resampling, frontend, network or pooling code recomputes every clip once.

Clips are decoded and resampled block by block and cut into pieces that frame exactly as the whole
clip frames (`frame_pieces`); pieces are pooled into their clip with running sums (`_Pooling`; a
clip's pieces in order, its last frame carried to the next piece for the difference across them).
Short clips are one piece each and go through the frontend and CNN many at a time; memory is
bounded by the pieces held, not by any clip's length (benchmarks/extract_memory.py).
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rbl import audio
from rbl.cache import Cache
from rbl.errors import ON_ERROR_HINT, InputError, reason
from rbl.feature_settings import ExtractSettings
from rbl.logmel import EXAMPLE_FRAMES, cepstral_matrix, frame_pieces, logmel_frames

log = logging.getLogger(__name__)

# Frames per piece of a long clip: 64 VGGish examples (61.44 s, 3.9 MB of samples), one CNN call
# (rbl.vggish.model.CPU_CNN_BATCH; not imported from there, which would import torch: a test checks
# they agree). Clips up to this long are batched whole as before; longer ones go on piece by piece,
# so memory does not grow with a clip's length.
PIECE_FRAMES = 64 * EXAMPLE_FRAMES
# Samples of pieces in one frontend call: 8.4 M (524 s of audio, about 300 MB of frames and spectra;
# a batch of 32 clips of 10 s is 5.1 M, one call as before).
GROUP_SAMPLES = 2**23


def _batched(items: list, size: int):
    for k in range(0, len(items), size):
        yield items[k : k + size]


def _out_of_memory(err: BaseException) -> bool:
    """Whether an exception is an allocation failure (numpy's MemoryError, torch's CPU allocator)."""
    torch = sys.modules.get("torch")  # only VGGish imports it
    if isinstance(err, MemoryError) or isinstance(err, getattr(torch, "OutOfMemoryError", MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "not enough memory" in text or "can't allocate memory" in text or "out of memory" in text
    )


def _memory_reason(err: BaseException, doing: str) -> str:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"ran out of memory {doing} ({detail}); free memory or lower features.batch_clips, "
        "or replace the file if it is not what its header says"
    )


class _Clip:
    """One clip's pieces (`frame_pieces` over `audio.stream`), each with whether it is the last, read on demand."""

    def __init__(self, path: str, unit: int) -> None:
        self.path = path
        self.pieces = frame_pieces(audio.stream(path), PIECE_FRAMES, unit)
        self.ahead = None  # the piece read but not yet handed out (to tell the last one)

    def next(self) -> tuple[np.ndarray | None, int, bool, str]:
        """(piece, frames, last, "") or (None, 0, True, why the clip cannot be used). Runs in a worker thread."""
        try:
            if self.ahead is None:
                self.ahead = next(self.pieces)
            piece, frames = self.ahead
            self.ahead = next(self.pieces, None)
            return piece, frames, self.ahead is None, ""
        except InputError as err:
            return None, 0, True, reason(err, self.path)
        except Exception as err:  # noqa: BLE001 - any failure while decoding is the file's (or its size's)
            if _out_of_memory(err):
                return None, 0, True, _memory_reason(err, "decoding it")
            return None, 0, True, f"cannot decode audio ({type(err).__name__}: {err})"


def _moments(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, mean, sum of squared deviations from the mean) of the rows of a float64 array, per column."""
    mean = values.mean(axis=0)
    return len(values), mean, ((values - mean) ** 2).sum(axis=0)


def _merged(a: tuple | None, b: tuple) -> tuple[int, np.ndarray, np.ndarray]:
    """Chan et al.'s pairwise merge of two `_moments` (a may be None: nothing yet; b may count 0 rows)."""
    if a is None or a[0] == 0:
        return b
    if b[0] == 0:
        return a
    (na, mean_a, m2_a), (nb, mean_b, m2_b) = a, b
    total = na + nb
    delta = mean_b - mean_a
    return total, mean_a + delta * (nb / total), m2_a + m2_b + delta**2 * (na * nb / total)


class _Pooling:
    """Running per-clip pooling over pieces, in float64: the mean VGGish embedding, or log-mel statistics.

    Log-mel: for each of the 64 bands and then each of the 20 cepstral coefficients of a frame
    (rbl.logmel.cepstral_matrix: the frames' MFCCs), the mean and std of the frames L[t] and the
    mean of |d_t| and std of d_t of their differences d_t = L[t+1] - L[t] (336 values,
    rbl.cache.DIMS). Each piece's (count, mean, sum of squared deviations) of its frames (bands and
    cepstra side by side), and of its differences [d, |d|], merge into the clip's with
    Chan et al.'s pairwise update, which keeps the std as accurate as the two-pass whole-clip
    computation. A clip's pieces must come in order: the last frame of a piece is kept and prepended
    to the next, so the difference across a piece boundary is counted once, and only there. A clip
    of one frame has no difference: its delta statistics are 0.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.cepstra = cepstral_matrix()  # logmel: frames (64 bands) -> their 20 cepstral coefficients
        self.count: dict[int, int] = {}  # vggish: examples
        self.first: dict[int, np.ndarray] = {}  # vggish: sum of embeddings
        self.frames: dict[int, tuple] = {}  # logmel: `_moments` of the frames
        self.deltas: dict[int, tuple] = {}  # logmel: `_moments` of [d, |d|] (84 columns each)
        self.last: dict[int, np.ndarray] = {}  # logmel: the last frame pooled (the next piece's d_0 starts there)

    def add(self, clip: int, values: np.ndarray) -> None:
        """Fold one piece's rows (its examples' embeddings, or its log-mel frames, in order) into the clip."""
        values = values.astype(np.float64)
        if self.name == "vggish":
            self.first[clip] = self.first.get(clip, 0.0) + values.sum(axis=0)
            self.count[clip] = self.count.get(clip, 0) + len(values)
            return
        if not len(values):
            return
        values = np.concatenate([values, values @ self.cepstra], axis=1)
        self.frames[clip] = _merged(self.frames.get(clip), _moments(values))
        if clip in self.last:
            values = np.concatenate([self.last[clip][None], values])
        self.last[clip] = values[-1].copy()
        if len(values) > 1:
            diff = np.diff(values, axis=0)
            self.deltas[clip] = _merged(self.deltas.get(clip), _moments(np.concatenate([diff, np.abs(diff)], axis=1)))

    def pop(self, clip: int) -> np.ndarray:
        """The clip's feature vector, float32, forgetting the clip: (128,) for vggish, (336,) for logmel.

        Log-mel: [mean (64), std (64), mean |d| (64), std d (64)] of the bands, then the same four
        of the cepstral coefficients (20 each), population stds.
        """
        if self.name == "vggish":
            n, first = self.count.pop(clip), self.first.pop(clip)
            return (first / n).astype(np.float32)
        n, mean, m2 = self.frames.pop(clip)
        self.last.pop(clip)
        columns = len(mean)  # bands, then cepstra
        if clip in self.deltas:
            dn, dmean, dm2 = self.deltas.pop(clip)
            abs_mean, std = dmean[columns:], np.sqrt(dm2[:columns] / dn)
        else:  # one frame: no difference
            abs_mean, std = np.zeros(columns), np.zeros(columns)
        stats = [mean, np.sqrt(m2 / n), abs_mean, std]
        bands = columns - self.cepstra.shape[1]
        return np.concatenate([s[:bands] for s in stats] + [s[bands:] for s in stats]).astype(np.float32)

    def drop(self, clip: int) -> None:
        for table in (self.count, self.first, self.frames, self.deltas, self.last):
            table.pop(clip, None)


def _groups(pieces: list, budget: int):
    """Consecutive runs of pieces of at most `budget` samples in all (a larger piece goes alone)."""
    group, size = [], 0
    for piece in pieces:
        if group and size + len(piece[1]) > budget:
            yield group
            group, size = [], 0
        group.append(piece)
        size += len(piece[1])
    if group:
        yield group


class _Extraction:
    """The clips left to compute after the cache lookup, computed and pooled (one `extract` call).

    Holds what the pieces share: the extractor and its model, the cache the vectors go to, the
    running pooling, and per audio digest the vectors computed and the reasons of clips refused.
    """

    def __init__(
        self, paths: list[str], digests: list[str], name: str, model, device, cache: Cache, on_error: str
    ) -> None:
        self.paths, self.digests, self.name, self.model, self.device = paths, digests, name, model, device
        self.cache, self.on_error = cache, on_error
        self.unit = EXAMPLE_FRAMES if name == "vggish" else 1
        self.pooling = _Pooling(name)
        self.computed: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}  # digest -> reason

    def refuse(self, i: int, why: str) -> None:
        """Clip i cannot be used: stop naming it, or (on_error "skip") remember why and go on."""
        self.pooling.drop(i)
        if self.on_error == "stop":
            raise InputError(f"{self.paths[i]}: {why}; {ON_ERROR_HINT}")
        self.failed[self.digests[i]] = why
        log.warning("skipped %s: %s", self.paths[i], why)

    def rows_of(self, group: list[tuple[int, np.ndarray, int, bool]]) -> list[np.ndarray]:
        """Per piece: its log-mel frames (logmel, numpy), or its examples' embeddings (vggish: one
        torch frontend and CNN call on the device for the whole group)."""
        if self.name != "vggish":
            return [logmel_frames(wave, k) for _, wave, k, _ in group]
        import torch

        from rbl.vggish.frontend import N_MELS, pieces_logmel

        waves = [torch.from_numpy(wave).to(self.device) for _, wave, _, _ in group]
        frames = [k for _, _, k, _ in group]
        with torch.inference_mode():
            out = self.model(pieces_logmel(waves, frames).view(-1, EXAMPLE_FRAMES, N_MELS))
            return [part.numpy() for part in torch.split(out.float().cpu(), [k // EXAMPLE_FRAMES for k in frames])]

    def compute(self, pieces: list[tuple[int, np.ndarray, int, bool]]) -> None:
        """Pool pieces (clip, samples, frames, last) into their clips; a clip is done with its last piece."""
        for group in _groups(pieces, GROUP_SAMPLES):
            try:
                rows = self.rows_of(group)
            except Exception as err:  # noqa: BLE001 - only allocation failures are handled, the rest re-raised
                if not _out_of_memory(err):
                    raise
                if len(group) > 1:  # find the clip that does not fit: one piece at a time
                    for piece in group:
                        self.compute([piece])
                    continue
                self.refuse(group[0][0], _memory_reason(err, "computing its features"))
                continue
            for (i, _, _, last), values in zip(group, rows):
                if self.digests[i] in self.failed:
                    continue
                self.pooling.add(i, values)
                if last:
                    self.finish(i)

    def finish(self, i: int) -> None:
        """Clip i's last piece is pooled: check its vector, cache it."""
        vec = self.pooling.pop(i)
        if not np.isfinite(vec).all():
            self.refuse(i, "its features are not finite (extreme sample values?); replace or remove it")
            return
        self.cache.put(self.digests[i], vec)
        self.computed[self.digests[i]] = vec

    def begin(self, i: int) -> tuple[_Clip, tuple]:
        """Open clip i and read its first piece (in a worker thread)."""
        clip = _Clip(self.paths[i], self.unit)
        return clip, clip.next()

    def run(self, work: list[int], batch_clips: int, workers: int, progress: bool) -> None:
        """Compute the clips `work`, a batch at a time, the next batch decoding while one computes.

        The next batch decodes in the threads while this one goes through the frontend and CNN
        (numpy's FFT and torch release the GIL). A batch holds the first piece of each clip (all of a clip up to
        PIECE_FRAMES); a longer clip then goes on piece by piece (`rest_of`). Memory holds two
        batches of pieces (and one piece read ahead per clip, to tell its last), and one frontend
        call of GROUP_SAMPLES, whatever the clips' lengths.
        """
        bar = tqdm(total=len(work), desc=f"extracting ({self.name})", unit="clip", disable=not progress)
        chunks = list(_batched(work, max(1, batch_clips)))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:

            def decode(chunk: list[int]) -> list[Future]:
                return [pool.submit(self.begin, i) for i in chunk]

            pending = decode(chunks[0]) if chunks else []
            for n, chunk in enumerate(chunks):
                started = [future.result() for future in pending]
                pending = decode(chunks[n + 1]) if n + 1 < len(chunks) else []
                ready, longer = [], []
                for i, (clip, (piece, frames, last, why)) in zip(chunk, started):
                    if piece is None:
                        self.refuse(i, why)
                        continue
                    ready.append((i, piece, frames, last))
                    if not last:
                        longer.append((i, clip))
                del started
                self.compute(ready)
                del ready
                for i, clip in longer:
                    self.rest_of(pool, i, clip)
                bar.update(len(chunk))
        bar.close()

    def rest_of(self, pool: ThreadPoolExecutor, i: int, clip: _Clip) -> None:
        """The pieces of a long clip after its first, its next piece decoding while one computes."""
        ahead = pool.submit(clip.next)
        while self.digests[i] not in self.failed:
            piece, frames, last, why = ahead.result()
            if piece is None:
                self.refuse(i, why)
                return
            if not last:
                ahead = pool.submit(clip.next)
            self.compute([(i, piece, frames, last)])
            if last:
                return


def _load_model(name: str, settings: ExtractSettings, device):
    """The VGGish model (None for logmel)."""
    if name != "vggish":
        return None
    from rbl.vggish.weights import load_extractor

    return load_extractor(
        Path(settings.weights_dir),
        settings.download,
        settings.final_relu,
        device,
        verify=settings.verify,
        precision=settings.precision,
    )


def compute(
    paths: list[str],
    digests: list[str],
    work: list[int],
    name: str,
    settings: ExtractSettings,
    cache: Cache,
    progress: bool,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Compute the clips `work` (indices into paths) with extractor `name` and put them in the cache.

    Returns the vectors computed and the reasons of the clips refused (on_error "skip"), both by
    audio digest; with on_error "stop" a refused clip raises InputError naming it. `logmel` runs
    on the CPU whatever `settings.device` says.
    """
    device = None
    if name == "vggish":
        import torch

        device = torch.device(settings.device)
    job = _Extraction(paths, digests, name, _load_model(name, settings, device), device, cache, settings.on_error)
    job.run(work, settings.batch_clips, settings.workers, progress)
    return job.computed, job.failed
