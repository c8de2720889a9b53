"""A small, deterministic synthetic dataset of hierarchical audio for demos and tests.

`generate(out_dir)` writes a two-level taxonomy (3 families x 4 sounds = 12 leaves), a folder
of short clips and an annotation table, in the layout the pipeline reads:

    out_dir/taxonomy.csv       family,sound             one row per leaf, coarsest level first
    out_dir/annotations.csv    file,label,group         file relative to out_dir/audio
    out_dir/audio/<family>/<sound>/<family>_<sound>_<k>.wav|.flac

The classes
-----------
Families differ in the *kind* of signal, so that even a crude feature (mean and standard
deviation of a log-mel spectrogram) separates them more strongly than the sounds within them:

``tonal``  sustained pitched tones: energy sits in narrow spectral lines, all sounds share one
           pitch range (G3 to E4, drawn per clip) and roll off steeply above ~3.5 kHz, so the
           top of the spectrum is empty; the level changes slowly over time.
``noise``  stationary coloured noise over a shared pink-noise bed (~12 dB down): energy is
           spread smoothly across the whole spectrum and is steady in time, no lines.
``pulse``  short percussive events separated by near-silence: energy comes in bursts, so the
           per-band standard deviation over time is large.

Within a family the four sounds differ in timbre (spectral envelope, partial structure or
event shape), which separates them less strongly than the families:

tonal
    ``flute-like``  fundamental plus weak odd harmonics, light vibrato and a little breath
                    noise: an almost pure tone with a soft attack.
    ``brass-like``  many harmonics with a slowly rolling-off spectrum: bright and dense.
    ``bell-like``   inharmonic partials (ratios 0.56, 0.92, 1.19, 1.71, 2.0, 2.74, ...) with
                    exponential decays, higher partials dying faster; re-struck about once a second.
    ``organ-like``  even and odd harmonics plus octave "drawbars" at nearly equal level,
                    perfectly sustained (flat envelope, no vibrato).
noise
    ``rumble``      low-passed noise (cut-off ~200 Hz).
    ``hiss``        high band noise (~4-7.5 kHz).
    ``whoosh``      band-pass noise whose centre sweeps up and down between ~400 Hz and ~3 kHz.
    ``rain``        a mid-band (1-5 kHz) noise with dense, random, sharp crackles on top.
pulse
    ``clicks``      very short broadband (1.5-7.5 kHz) clicks at a steady rate (~8 per second).
    ``drum``        low sine bursts (~110 Hz falling to ~65 Hz) with ~150 ms exponential decay.
    ``chirps``      repeated rising FM chirps (~1 kHz to ~4 kHz in ~100 ms).
    ``knock``       damped two-mode resonators (~400 Hz and ~950 Hz) excited in irregular pairs.

Every clip gets random variation so the task is learnable but not trivial: pitch (tonal, over
the shared range) or centre frequency / cut-off jitter of a few per cent (noise, pulse), event
rate and timing jitter, a random onset delay, a random peak level, and a little white
background noise at -50 to -40 dB. All content stays below 7.5 kHz, so a sound means the same
thing at every sample rate used. With the defaults, leave-one-out 1-nearest-neighbour on
standardised log-mel mean/std features scores about 0.95-1.0 for the family and 0.9 for the
sound (chance 1/3 and 1/12), most sound-level errors falling within the right family.

The files deliberately exercise the loader: sample rates cycle over `DEFAULT_SAMPLE_RATES`,
about a quarter of the clips are stereo (channels differ slightly), lengths vary from 1 to 3 s
except for exactly one 0.6 s clip (shorter than one 0.96 s analysis window), every fifth file is
FLAC (the rest 16-bit WAV), and exactly two annotation rows carry an incomplete label: the
family name (an inner node) instead of the leaf, meaning the finer level is unknown for them.
Clips come in pairs from one simulated source (``group`` = ``<sound>-src<k // 2>``) so that
group-aware splitting is meaningful.

Everything is derived from ``numpy.random.default_rng([seed, clip_index])`` and samples are
quantised to 16 bits before writing, so one seed gives byte-identical files. Every file is
written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from rbl.atomic import atomic_path, write_csv_rows

__all__ = ["DEFAULT_SAMPLE_RATES", "TAXONOMY", "generate"]

DEFAULT_SAMPLE_RATES: tuple[int, ...] = (16000, 22050, 44100)

#: family -> its sounds (leaves), coarsest level first. Leaf names are unique.
TAXONOMY: dict[str, tuple[str, ...]] = {
    "tonal": ("flute-like", "brass-like", "bell-like", "organ-like"),
    "noise": ("rumble", "hiss", "whoosh", "rain"),
    "pulse": ("clicks", "drum", "chirps", "knock"),
}

_MAX_FREQ = 7500.0  # keep all content below the Nyquist frequency of the lowest rate
_TONAL_CEILING = 3500.0  # partials of tonal sounds roll off steeply above this
_SHORT_SECONDS = 0.6
_MIN_SECONDS = 1.0
_MAX_SECONDS = 3.0
_STEREO_EVERY = 4  # clip index % 4 == 1 -> stereo
_FLAC_EVERY = 5  # clip index % 5 == 4 -> FLAC


# --------------------------------------------------------------------------- helpers


def _jitter(rng: np.random.Generator, value: float, rel: float = 0.04) -> float:
    return float(value * (1.0 + rng.uniform(-rel, rel)))


def _harmonic_tone(
    t: np.ndarray, f0: float, amps: dict[float, float], vibrato: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Sum of partials at `ratio * f0` with amplitude `amps[ratio]`; optional slow vibrato."""
    if vibrato > 0.0:
        rate = 5.0 if rng is None else rng.uniform(4.5, 6.0)
        inst = f0 * (1.0 + vibrato * np.sin(2 * np.pi * rate * t))
        phase = 2 * np.pi * np.cumsum(inst) * (t[1] - t[0] if t.size > 1 else 0.0)
    else:
        phase = 2 * np.pi * f0 * t
    out = np.zeros_like(t)
    for ratio, amp in amps.items():
        freq = ratio * f0
        if freq >= 1.5 * _TONAL_CEILING:
            continue
        ph0 = 0.0 if rng is None else rng.uniform(0, 2 * np.pi)
        out += amp / (1.0 + (freq / _TONAL_CEILING) ** 8) * np.sin(ratio * phase + ph0)
    return out


def _tonal_f0(rng: np.random.Generator) -> float:
    """A pitch drawn log-uniformly from the range shared by every tonal sound (G3 to E4)."""
    return float(np.exp(rng.uniform(np.log(196.0), np.log(330.0))))


def _pink(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Pink (1/f power) noise band-limited to 50 Hz .. 7.5 kHz, unit standard deviation."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    keep = (freqs >= 50.0) & (freqs <= _MAX_FREQ)
    spec = np.where(keep, spec / np.sqrt(np.maximum(freqs, 1.0)), 0.0)
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def _with_bed(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    """Add the pink noise bed shared by the noise family, ~12 dB below the coloured noise."""
    x = x / (np.std(x) + 1e-12)
    return x + rng.uniform(0.2, 0.3) * _pink(rng, x.size, sr)


def _attack_release(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    env = np.ones(n)
    a = min(n, max(1, int(attack * sr)))
    r = min(n - a, max(1, int(release * sr)))
    env[:a] = np.linspace(0.0, 1.0, a)
    if r > 0:
        env[n - r :] = np.linspace(1.0, 0.0, r)
    return env


def _bandpass(x: np.ndarray, sr: int, lo: float | None, hi: float | None, order: int = 4) -> np.ndarray:
    nyq = sr / 2
    if lo is not None and hi is not None:
        sos = signal.butter(order, [lo / nyq, min(hi, 0.95 * nyq) / nyq], btype="bandpass", output="sos")
    elif lo is not None:
        sos = signal.butter(order, lo / nyq, btype="highpass", output="sos")
    else:
        sos = signal.butter(order, min(hi, 0.95 * nyq) / nyq, btype="lowpass", output="sos")
    return signal.sosfilt(sos, x)


def _event_times(rng: np.random.Generator, duration: float, period: float, jitter: float) -> list[float]:
    """Roughly periodic event times in [0, duration)."""
    times = []
    t = rng.uniform(0.0, period * 0.5)
    while t < duration:
        times.append(t)
        t += period * (1.0 + rng.uniform(-jitter, jitter))
    return times


def _place(out: np.ndarray, event: np.ndarray, start: int, gain: float = 1.0) -> None:
    if start >= out.size:
        return
    m = min(event.size, out.size - start)
    out[start : start + m] += gain * event[:m]


# --------------------------------------------------------------------------- tonal


def _flute(rng, n, sr):
    t = np.arange(n) / sr
    f0 = _tonal_f0(rng)
    x = _harmonic_tone(t, f0, {1: 1.0, 3: 0.12, 5: 0.03}, vibrato=0.006, rng=rng)
    breath = _bandpass(rng.standard_normal(n), sr, 0.8 * f0, 1.3 * f0, order=2)
    x = x + 0.05 * breath / (np.std(breath) + 1e-12)
    return x * _attack_release(n, sr, rng.uniform(0.06, 0.12), 0.1)


def _brass(rng, n, sr):
    t = np.arange(n) / sr
    f0 = _tonal_f0(rng)
    tilt = rng.uniform(0.6, 0.8)
    amps = {h: 1.0 / h**tilt for h in range(1, 40)}
    x = _harmonic_tone(t, f0, amps, vibrato=0.003, rng=rng)
    return x * _attack_release(n, sr, rng.uniform(0.03, 0.06), 0.08)


_BELL_RATIOS = (0.56, 0.92, 1.19, 1.71, 2.0, 2.74, 3.0, 3.76, 4.07)
_BELL_AMPS = (1.0, 0.67, 1.0, 1.8, 2.67, 1.67, 1.46, 1.33, 1.33)


def _bell(rng, n, sr):
    f0 = _tonal_f0(rng)
    out = np.zeros(n)
    length = min(n, int(1.6 * sr))
    te = np.arange(length) / sr
    strike = np.zeros(length)
    for ratio, amp in zip(_BELL_RATIOS, _BELL_AMPS):
        decay = 0.9 / ratio  # seconds; higher partials die faster
        strike += amp * np.exp(-te / decay) * np.sin(2 * np.pi * ratio * f0 * te + rng.uniform(0, 2 * np.pi))
    for t0 in _event_times(rng, n / sr, rng.uniform(0.9, 1.2), 0.1):
        _place(out, strike, int(t0 * sr), rng.uniform(0.7, 1.0))
    return out


def _organ(rng, n, sr):
    t = np.arange(n) / sr
    f0 = _tonal_f0(rng)
    amps = {1: 1.0, 2: 0.9, 3: 0.7, 4: 0.85, 5: 0.5, 6: 0.55, 8: 0.7, 10: 0.3, 12: 0.35, 16: 0.4}
    x = _harmonic_tone(t, f0, amps, rng=rng)
    return x * _attack_release(n, sr, 0.01, 0.02)


# --------------------------------------------------------------------------- noise


def _rumble(rng, n, sr):
    return _with_bed(rng, _bandpass(rng.standard_normal(n), sr, None, _jitter(rng, 200.0, 0.08)), sr)


def _hiss(rng, n, sr):
    return _with_bed(rng, _bandpass(rng.standard_normal(n), sr, _jitter(rng, 4000.0, 0.06), _MAX_FREQ), sr)


def _whoosh(rng, n, sr):
    nfft = 512
    hop = nfft // 4
    frames = n // hop + 2
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
    lo, hi = _jitter(rng, 400.0, 0.08), _jitter(rng, 3000.0, 0.08)
    rate = rng.uniform(0.4, 0.8)  # sweeps per second
    tt = np.arange(frames) * hop / sr
    centre = np.exp(
        np.log(lo) + (np.log(hi) - np.log(lo)) * 0.5 * (1 - np.cos(2 * np.pi * rate * tt + rng.uniform(0, np.pi)))
    )
    width = 0.25  # octaves (std of a Gaussian in log-frequency)
    logf = np.log2(np.maximum(freqs, 1.0))[:, None]
    mask = np.exp(-0.5 * ((logf - np.log2(centre)[None, :]) / width) ** 2)
    spec = (rng.standard_normal(mask.shape) + 1j * rng.standard_normal(mask.shape)) * mask
    _, x = signal.istft(spec, fs=sr, nperseg=nfft, noverlap=nfft - hop)
    x = np.asarray(x[:n], dtype=float)
    if x.size < n:
        x = np.pad(x, (0, n - x.size))
    return _with_bed(rng, x, sr)


def _rain(rng, n, sr):
    bed = _bandpass(rng.standard_normal(n), sr, 1000.0, 5000.0, order=2)
    bed = 0.15 * bed / (np.std(bed) + 1e-12)
    drops = np.zeros(n)
    count = rng.poisson(rng.uniform(40, 70) * n / sr)
    drops[rng.integers(0, n, size=count)] = rng.uniform(-1.0, 1.0, size=count) ** 3 * 4.0
    drops = _bandpass(drops, sr, 2000.0, _MAX_FREQ, order=2)
    return _with_bed(rng, bed + drops, sr)


# --------------------------------------------------------------------------- pulse


def _clicks(rng, n, sr):
    out = np.zeros(n)
    for t0 in _event_times(rng, n / sr, 1.0 / _jitter(rng, 8.0, 0.1), 0.03):
        out[int(t0 * sr)] += rng.uniform(0.8, 1.0) * rng.choice((-1.0, 1.0))
    return _bandpass(out, sr, 1500.0, _MAX_FREQ, order=2)


def _drum(rng, n, sr):
    f_hi, f_lo = _jitter(rng, 110.0), _jitter(rng, 65.0)
    length = int(0.45 * sr)
    te = np.arange(length) / sr
    inst = f_lo + (f_hi - f_lo) * np.exp(-te / 0.04)
    hit = np.sin(2 * np.pi * np.cumsum(inst) / sr) * np.exp(-te / _jitter(rng, 0.15, 0.1))
    out = np.zeros(n)
    for t0 in _event_times(rng, n / sr, rng.uniform(0.4, 0.6), 0.1):
        _place(out, hit, int(t0 * sr), rng.uniform(0.7, 1.0))
    return out


def _chirps(rng, n, sr):
    f_start, f_end = _jitter(rng, 1000.0), _jitter(rng, 4000.0)
    dur = _jitter(rng, 0.1, 0.1)
    length = int(dur * sr)
    te = np.arange(length) / sr
    chirp = signal.chirp(te, f0=f_start, t1=dur, f1=f_end, method="logarithmic") * np.hanning(length)
    out = np.zeros(n)
    for t0 in _event_times(rng, n / sr, rng.uniform(0.25, 0.35), 0.1):
        _place(out, chirp, int(t0 * sr), rng.uniform(0.7, 1.0))
    return out


def _knock(rng, n, sr):
    modes = ((_jitter(rng, 400.0), 0.035, 1.0), (_jitter(rng, 950.0), 0.02, 0.6))
    length = int(0.2 * sr)
    te = np.arange(length) / sr
    hit = sum(a * np.exp(-te / d) * np.sin(2 * np.pi * f * te) for f, d, a in modes)
    out = np.zeros(n)
    for t0 in _event_times(rng, n / sr, rng.uniform(0.5, 0.7), 0.15):
        _place(out, hit, int(t0 * sr), rng.uniform(0.7, 1.0))
        _place(out, hit, int((t0 + rng.uniform(0.12, 0.18)) * sr), rng.uniform(0.5, 0.9))
    return out


_SYNTHS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "flute-like": _flute,
    "brass-like": _brass,
    "bell-like": _bell,
    "organ-like": _organ,
    "rumble": _rumble,
    "hiss": _hiss,
    "whoosh": _whoosh,
    "rain": _rain,
    "clicks": _clicks,
    "drum": _drum,
    "chirps": _chirps,
    "knock": _knock,
}


# --------------------------------------------------------------------------- clips


def _render(sound: str, rng: np.random.Generator, sr: int, seconds: float, channels: int) -> np.ndarray:
    """One clip as an int16 array of shape (frames,) or (frames, channels)."""
    n = int(np.ceil(seconds * sr))
    onset = int(rng.uniform(0.0, min(0.2, 0.25 * seconds)) * sr)
    body = _SYNTHS[sound](rng, n - onset, sr)
    body = body / (np.max(np.abs(body)) + 1e-12)
    dry = np.concatenate([np.zeros(onset), body])
    noise_level = 10 ** (-rng.uniform(40.0, 50.0) / 20)
    chans = []
    for c in range(channels):
        x = dry
        if c > 0:  # the other channel: a slight delay and gain difference
            delay = int(rng.integers(1, max(2, int(0.0008 * sr))))
            x = np.concatenate([np.zeros(delay), dry[:-delay]]) * rng.uniform(0.8, 0.95)
        chans.append(x + noise_level * rng.standard_normal(n))
    data = np.stack(chans, axis=1)
    peak = rng.uniform(0.4, 0.5)
    data *= peak / (np.max(np.abs(data)) + 1e-12)
    ints = np.clip(np.round(data * 32767.0), -32767, 32767).astype(np.int16)
    return ints[:, 0] if channels == 1 else ints


def generate(out_dir: str | os.PathLike, clips_per_class: int = 6, seed: int = 0) -> None:
    """Write the synthetic dataset (taxonomy.csv, annotations.csv, audio/) under `out_dir`.

    Deterministic in `seed`: the same seed gives byte-identical files. Files the generator owns
    are overwritten (atomically); anything else in `out_dir` is left alone.
    """
    if int(clips_per_class) != clips_per_class or clips_per_class < 1:
        raise ValueError(f"clips_per_class must be a positive integer, got {clips_per_class!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    clips_per_class, seed = int(clips_per_class), int(seed)
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"

    families = list(TAXONOMY)
    # Two incomplete labels from different families: the last clip of the first sound of each of
    # the first two families. The one short clip is the first clip of the second sound.
    incomplete = {
        (families[0], TAXONOMY[families[0]][0], clips_per_class - 1),
        (families[1], TAXONOMY[families[1]][0], clips_per_class - 1),
    }
    short_index = clips_per_class

    taxonomy_rows: list[list[str]] = []
    annotation_rows: list[list[str]] = []
    index = 0
    for family in families:
        for sound in TAXONOMY[family]:
            taxonomy_rows.append([family, sound])
            for k in range(clips_per_class):
                rng = np.random.default_rng([seed, index])
                sr = DEFAULT_SAMPLE_RATES[index % len(DEFAULT_SAMPLE_RATES)]
                channels = 2 if index % _STEREO_EVERY == 1 else 1
                ext, fmt = ("flac", "FLAC") if index % _FLAC_EVERY == _FLAC_EVERY - 1 else ("wav", "WAV")
                seconds = _SHORT_SECONDS if index == short_index else rng.uniform(_MIN_SECONDS, _MAX_SECONDS)
                data = _render(sound, rng, sr, seconds, channels)

                rel = f"{family}/{sound}/{family}_{sound}_{k}.{ext}"
                with atomic_path(audio_dir / rel) as tmp:
                    sf.write(tmp, data, sr, format=fmt, subtype="PCM_16")
                label = family if (family, sound, k) in incomplete else sound
                annotation_rows.append([rel, label, f"{sound}-src{k // 2}"])
                index += 1

    write_csv_rows(out_dir / "taxonomy.csv", ["family", "sound"], taxonomy_rows)
    write_csv_rows(out_dir / "annotations.csv", ["file", "label", "group"], annotation_rows)
