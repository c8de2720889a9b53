"""Realistic benchmark corpora, rendered on this machine from real sampled sound.

The synthetic demo (`rbl.demo`) checks the plumbing; these two generators make datasets on which
the method can be judged, from recorded sound that Debian packages ship, without committing any
audio. Each writes, in the layout the pipeline reads (README "Inputs"):

    out/taxonomy.csv       one column per level, coarsest first, one row per leaf
    out/annotations.csv    file,label        file relative to out/audio, label = the leaf's name
    out/audio/<...>/<leaf>_<k>.wav           mono 16-bit WAV at 22.05 kHz
    out/corpus.json        how it was made: kind, seed, sizes, tool versions

``instruments`` (family -> instrument; 10 families x 7 = 70 instruments, 32 clips each = 2,240)
    General MIDI instruments played by fluidsynth from the FluidR3 GM soundfont (sampled real
    instruments; Debian packages fluidsynth and fluid-soundfont-gm). Every clip is a random
    phrase (a random walk of notes with random durations), one held note or, for polyphonic
    families, a few random chords; in a pitch window drawn inside the instrument's usual range,
    with a random velocity (with a little jitter per note), reverb and chorus sends, length
    (1-4 s) and output level (peak at -27 to -3 dBFS, a 24 dB range). One MIDI file per family
    holds all of its clips, separated by silence, and is rendered by a single fluidsynth run
    (loading the 148 MB soundfont once per family, not once per clip); the clips are cut at the
    known times.
``speech`` (language family -> language -> voice; 4 x 3 x 3 = 36 voices, 16 clips each = 576)
    espeak-ng (Debian package espeak-ng) reading random numbers, so that every language says them
    in its own words: Germanic (German, Dutch, Swedish), Romance (French, Spanish, Italian),
    Slavic (Russian, Polish, Czech), Uralic (Finnish, Hungarian, Estonian). A voice is a language
    spoken with one of 12 espeak-ng voice variants (m1-m7, f1-f5); every language has three, and
    every variant serves three languages in three different families, so a voice's timbre alone
    does not give away its family or language. Every clip has 1-3 random numbers of 2-4 digits
    (hence random length, about 1-6 s), a random speaking rate (140-200 words per minute) and pitch (+-8 around
    espeak's default), a random onset, light pink background noise 30-45 dB below the speech and a
    random output level (peak at -27 to -3 dBFS). Leaves are named ``<language>_<variant>``, e.g.
    ``de_m3``.

Randomness comes from ``numpy.random.default_rng([seed, corpus, leaf, clip])``, with the leaf's
position in the full taxonomy, and the tools are deterministic, so a seed gives byte-identical
files for the same tool versions and soundfont (recorded in corpus.json). Every file is written
atomically. A missing program or soundfont raises InputError naming it and the install command
(scripts/install_corpus_tools.sh). External programs run from argument lists, never a shell.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from rbl.atomic import atomic_path, write_csv_rows, write_text
from rbl.errors import InputError

__all__ = [
    "CORPORA",
    "DEFAULT_CLIPS_PER_CLASS",
    "INSTRUMENT_FAMILIES",
    "SOUNDFONT",
    "SPEECH_FAMILIES",
    "VARIANTS",
    "generate_instruments",
    "generate_speech",
    "speech_voices",
]

SAMPLE_RATE = 22050
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
INSTALL = (
    "install the corpus tools with scripts/install_corpus_tools.sh (as root; it runs "
    "apt-get install fluidsynth fluid-soundfont-gm espeak-ng)"
)
# 32 per instrument: about 19 train, 7 val, 6 test_seen per seen class at the default split
# fractions. With 8 the split gives 5/2/1, and one test_seen clip per class leaves the
# instrument-level silhouette undefined there; with 16, every method overfits within a few epochs
# (benchmarks/loss_study.py).
DEFAULT_CLIPS_PER_CLASS = {"instruments": 32, "speech": 16}

_LEVEL_DB = (-27.0, -3.0)  # output peak level range (dBFS)
_FADE_S = 0.01  # fade in/out at the cut points, against clicks


@dataclass(frozen=True)
class Instrument:
    name: str  # the leaf name (unique)
    program: int  # General MIDI program, 0-based
    low: int  # usual range, MIDI note numbers
    high: int


def _family(*items: tuple[str, int, int, int]) -> tuple[Instrument, ...]:
    return tuple(Instrument(*item) for item in items)


#: GM family -> 7 of its instruments (program numbers 0-based) with their usual pitch range.
INSTRUMENT_FAMILIES: dict[str, tuple[Instrument, ...]] = {
    "piano": _family(
        ("acoustic_grand_piano", 0, 36, 96),
        ("electric_grand_piano", 2, 36, 96),
        ("honky_tonk_piano", 3, 36, 91),
        ("electric_piano_1", 4, 36, 91),
        ("electric_piano_2", 5, 36, 91),
        ("harpsichord", 6, 41, 89),
        ("clavinet", 7, 36, 84),
    ),
    "chromatic_percussion": _family(
        ("celesta", 8, 60, 100),
        ("glockenspiel", 9, 77, 105),
        ("music_box", 10, 60, 96),
        ("vibraphone", 11, 53, 89),
        ("marimba", 12, 45, 96),
        ("xylophone", 13, 65, 103),
        ("tubular_bells", 14, 60, 77),
    ),
    "organ": _family(
        ("drawbar_organ", 16, 36, 96),
        ("percussive_organ", 17, 36, 96),
        ("rock_organ", 18, 36, 91),
        ("church_organ", 19, 36, 91),
        ("reed_organ", 20, 41, 89),
        ("accordion", 21, 53, 89),
        ("harmonica", 22, 60, 84),
    ),
    "guitar": _family(
        ("nylon_guitar", 24, 40, 81),
        ("steel_guitar", 25, 40, 84),
        ("jazz_guitar", 26, 40, 84),
        ("clean_electric_guitar", 27, 40, 84),
        ("muted_electric_guitar", 28, 40, 72),
        ("overdriven_guitar", 29, 40, 84),
        ("distortion_guitar", 30, 40, 84),
    ),
    "bass": _family(
        ("acoustic_bass", 32, 28, 55),
        ("finger_bass", 33, 28, 60),
        ("pick_bass", 34, 28, 60),
        ("fretless_bass", 35, 28, 60),
        ("slap_bass", 36, 28, 60),
        ("synth_bass_1", 38, 28, 60),
        ("synth_bass_2", 39, 28, 60),
    ),
    "strings": _family(
        ("violin", 40, 55, 96),
        ("viola", 41, 48, 84),
        ("cello", 42, 36, 76),
        ("contrabass", 43, 28, 60),
        ("tremolo_strings", 44, 40, 88),
        ("pizzicato_strings", 45, 40, 84),
        ("harp", 46, 36, 91),
    ),
    "brass": _family(
        ("trumpet", 56, 55, 82),
        ("trombone", 57, 40, 72),
        ("tuba", 58, 28, 58),
        ("muted_trumpet", 59, 55, 82),
        ("french_horn", 60, 41, 77),
        ("brass_section", 61, 41, 82),
        ("synth_brass", 62, 36, 84),
    ),
    "reed": _family(
        ("soprano_sax", 64, 56, 87),
        ("alto_sax", 65, 49, 81),
        ("tenor_sax", 66, 44, 76),
        ("oboe", 68, 58, 91),
        ("english_horn", 69, 52, 81),
        ("bassoon", 70, 34, 72),
        ("clarinet", 71, 50, 91),
    ),
    "pipe": _family(
        ("piccolo", 72, 74, 103),
        ("flute", 73, 60, 96),
        ("recorder", 74, 60, 91),
        ("pan_flute", 75, 60, 91),
        ("blown_bottle", 76, 60, 84),
        ("shakuhachi", 77, 55, 84),
        ("ocarina", 79, 60, 84),
    ),
    "ethnic": _family(
        ("sitar", 104, 48, 77),
        ("banjo", 105, 48, 84),
        ("shamisen", 106, 50, 79),
        ("koto", 107, 55, 91),
        ("kalimba", 108, 60, 88),
        ("bagpipe", 109, 55, 74),
        ("shanai", 111, 60, 84),
    ),
}
#: families whose clips may hold chords (the others play one note at a time)
_POLYPHONIC = {"piano", "chromatic_percussion", "organ", "guitar", "strings", "ethnic"}

#: language family -> languages (ISO 639-1 codes, the language level's names)
SPEECH_FAMILIES: dict[str, tuple[str, ...]] = {
    "germanic": ("de", "nl", "sv"),
    "romance": ("fr", "es", "it"),
    "slavic": ("ru", "pl", "cs"),
    "uralic": ("fi", "hu", "et"),
}
#: language -> espeak-ng voice
_ESPEAK_VOICE = {
    "de": "de",
    "nl": "nl",
    "sv": "sv",
    "fr": "fr-fr",
    "es": "es",
    "it": "it",
    "ru": "ru",
    "pl": "pl",
    "cs": "cs",
    "fi": "fi",
    "hu": "hu",
    "et": "et",
}
#: espeak-ng voice variants; voice v of language l in family f uses VARIANTS[(3 f + 3 l + v) % 12]
VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7")


def speech_voices() -> list[tuple[str, str, str]]:
    """Every (family, language, voice) of the speech corpus, in taxonomy order."""
    out = []
    for f, (family, languages) in enumerate(SPEECH_FAMILIES.items()):
        for l, language in enumerate(languages):
            for v in range(3):
                out.append((family, language, f"{language}_{VARIANTS[(3 * f + 3 * l + v) % len(VARIANTS)]}"))
    return out


# --------------------------------------------------------------------------- shared helpers


def _require_program(name: str, corpus: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InputError(f"{name}: program not found (the {corpus} corpus is rendered with it); {INSTALL}")
    return path


def _run(argv: list[str], what: str) -> str:
    """Run a program (an argument list, no shell); a failure raises InputError with its output."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    except OSError as err:
        raise InputError(f"{argv[0]}: could not be started ({err}); {INSTALL}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-800:]
        raise InputError(f"{what}: {Path(argv[0]).name} failed with status {done.returncode}: {tail}")
    return done.stdout


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout
    except OSError:
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _check_size(clips_per_class: int, seed: int) -> tuple[int, int]:
    if isinstance(clips_per_class, bool) or int(clips_per_class) != clips_per_class or clips_per_class < 1:
        raise InputError(f"clips_per_class must be a positive integer, got {clips_per_class!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(clips_per_class), int(seed)


def _select(all_leaves: list[str], classes: Iterable[str] | None, corpus: str) -> set[str]:
    if classes is None:
        return set(all_leaves)
    chosen = set(classes)
    unknown = sorted(chosen - set(all_leaves))
    if unknown or not chosen:
        raise InputError(f"{corpus}: unknown class(es) {unknown or '(none given)'}; choose among {all_leaves}")
    return chosen


def _pink(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Pink (1/f power) noise above 40 Hz, unit standard deviation."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec = np.where(freqs >= 40.0, spec / np.sqrt(np.maximum(freqs, 1.0)), 0.0)
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def _finish(x: np.ndarray, rng: np.random.Generator, sr: int, where: str) -> np.ndarray:
    """Fade the edges, set a random peak level, quantise to int16."""
    x = np.asarray(x, dtype=np.float64).copy()
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(peak) or peak < 1e-6:
        raise InputError(f"{where}: the rendered clip is silent; check the tool installation ({INSTALL})")
    fade = min(int(_FADE_S * sr), x.size // 4)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    x *= 10 ** (rng.uniform(*_LEVEL_DB) / 20) / peak
    return np.clip(np.round(x * 32767.0), -32767, 32767).astype(np.int16)


def _write_wav(path: Path, data: np.ndarray, sr: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, data, sr, format="WAV", subtype="PCM_16")


def _write_tables(
    out: Path, levels: list[str], taxonomy: list[tuple[str, ...]], annotations: list[list[str]], info: dict
) -> None:
    write_csv_rows(out / "taxonomy.csv", levels, [list(r) for r in taxonomy])
    write_csv_rows(out / "annotations.csv", ["file", "label"], annotations)
    write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")


# --------------------------------------------------------------------------- instruments: MIDI

_TICKS_PER_BEAT = 480
_TEMPO_US = 500_000  # 120 bpm: 960 ticks per second
_TICKS_PER_S = _TICKS_PER_BEAT * 1_000_000 // _TEMPO_US
_GAP_S = 1.5  # silence between clips in the render, for reverb tails


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def _smf(events: list[tuple[int, int, bytes]]) -> bytes:
    """A format-0 standard MIDI file from (tick, order, message) events (order breaks ties)."""
    track = _vlq(0) + b"\xff\x51\x03" + _TEMPO_US.to_bytes(3, "big")
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track += _vlq(tick - now) + message
        now = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, _TICKS_PER_BEAT) + b"MTrk" + struct.pack(">I", len(track)) + track


def _notes(
    rng: np.random.Generator, inst: Instrument, poly: bool, seconds: float
) -> list[tuple[float, float, int, int]]:
    """A random clip's notes: (start s, end s, MIDI note, velocity)."""
    start = rng.uniform(0.02, 0.2)
    stop = seconds - rng.uniform(0.05, 0.3)  # every note is released before the clip ends
    span = int(min(inst.high - inst.low, rng.integers(7, 20)))
    lo = int(rng.integers(inst.low, inst.high - span + 1))
    hi = lo + span
    velocity = int(rng.integers(40, 121))

    def vel() -> int:
        return int(np.clip(velocity + rng.integers(-10, 11), 1, 127))

    styles, weights = (("phrase", "single", "chords"), (0.5, 0.2, 0.3)) if poly else (("phrase", "single"), (0.7, 0.3))
    style = styles[int(rng.choice(len(styles), p=weights))]
    notes: list[tuple[float, float, int, int]] = []
    if style == "single":
        end = start + rng.uniform(min(0.4, stop - start), stop - start)
        notes.append((start, end, int(rng.integers(lo, hi + 1)), vel()))
    elif style == "phrase":
        beat = rng.uniform(0.12, 0.45)
        pitch = int(rng.integers(lo, hi + 1))
        t = start
        while t < stop - 0.05 or not notes:
            dur = min(beat * float(rng.choice((1, 1, 2, 2, 3, 4))), stop - t)
            dur = max(dur, 0.05)
            notes.append((t, t + dur * rng.uniform(0.6, 0.97), pitch, vel()))
            t += dur
            pitch = int(np.clip(pitch + rng.integers(-5, 6), lo, hi))
    else:  # chords
        shapes = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7), (0, 7, 12), (0, 4, 7, 12))
        t = start
        while t < stop - 0.2 or not notes:
            dur = max(min(rng.uniform(0.4, 1.5), stop - t), 0.1)
            root = int(rng.integers(lo, max(lo, hi - 7) + 1))
            shape = shapes[int(rng.integers(len(shapes)))]
            end = t + dur * rng.uniform(0.7, 0.97)
            for interval in shape:
                if root + interval <= inst.high or interval == 0:
                    notes.append((t, end, root + interval, vel()))
            t += dur
    return notes


def _render_family(
    argv0: str,
    soundfont: Path,
    family: str,
    plan: list[tuple[Instrument, list[tuple[float, list[tuple[float, float, int, int]], int, int]]]],
    sr: int,
    workdir: Path,
) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """Render one family's clips in one fluidsynth run; the mono signal and each clip's sample span."""
    events: list[tuple[int, int, bytes]] = []
    spans: list[list[tuple[int, int]]] = []
    tick = int(0.5 * _TICKS_PER_S)
    for inst, clips in plan:
        events.append((tick, 0, bytes((0xC0, inst.program))))
        tick += _TICKS_PER_S // 10
        inst_spans = []
        for seconds, notes, reverb, chorus in clips:
            events.append((tick, 1, bytes((0xB0, 91, reverb))))
            events.append((tick, 1, bytes((0xB0, 93, chorus))))
            for start, end, pitch, velocity in notes:
                events.append((tick + round(start * _TICKS_PER_S), 3, bytes((0x90, pitch, velocity))))
                events.append((tick + round(end * _TICKS_PER_S), 2, bytes((0x80, pitch, 64))))
            length = round(seconds * sr)
            first = round(tick * sr / _TICKS_PER_S)
            inst_spans.append((first, first + length))
            clip_end = tick + round(seconds * _TICKS_PER_S)
            # All sound off just after the cut, then silence for the effects' tails to die.
            events.append((clip_end + _TICKS_PER_S // 20, 0, bytes((0xB0, 120, 0))))
            tick = clip_end + round(_GAP_S * _TICKS_PER_S)
        spans.append(inst_spans)
    events.append((tick, 0, bytes((0xB0, 123, 0))))  # all notes off: marks the end of the file
    midi = workdir / f"{family}.mid"
    midi.write_bytes(_smf(events))
    wav = workdir / f"{family}.wav"
    _run(
        [argv0, "-ni", "-q", "-r", str(sr), "-O", "float", "-T", "wav", "-F", str(wav), str(soundfont), str(midi)],
        f"rendering the {family} family",
    )
    try:
        audio, rate = sf.read(wav, dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise InputError(
            f"rendering the {family} family: fluidsynth wrote no readable audio ({err}); {INSTALL}"
        ) from None
    if rate != sr:
        raise InputError(f"rendering the {family} family: fluidsynth wrote {rate} Hz instead of {sr} Hz")
    mono = audio.mean(axis=1)
    need = max(b for inst_spans in spans for _, b in inst_spans)
    if mono.size < need:
        mono = np.pad(mono, (0, need - mono.size))
    return mono, spans


def generate_instruments(
    out: str | os.PathLike,
    clips_per_class: int = DEFAULT_CLIPS_PER_CLASS["instruments"],
    seed: int = 0,
    *,
    classes: Iterable[str] | None = None,
    soundfont: str | os.PathLike = SOUNDFONT,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = True,
) -> None:
    """Write the `instruments` corpus (family -> instrument) under `out`.

    `classes` restricts it to some instruments (leaf names of INSTRUMENT_FAMILIES), e.g. for tests.
    """
    clips_per_class, seed = _check_size(clips_per_class, seed)
    out, soundfont = Path(out), Path(soundfont)
    leaves = [inst.name for insts in INSTRUMENT_FAMILIES.values() for inst in insts]
    chosen = _select(leaves, classes, "instruments")
    fluidsynth = _require_program("fluidsynth", "instruments")
    if not soundfont.is_file():
        raise InputError(
            f"{soundfont}: General MIDI soundfont not found (the instruments corpus is rendered from "
            f"FluidR3 GM, Debian package fluid-soundfont-gm); {INSTALL}"
        )

    taxonomy: list[tuple[str, ...]] = []
    annotations: list[list[str]] = []
    families = [(f, [i for i in insts if i.name in chosen]) for f, insts in INSTRUMENT_FAMILIES.items()]
    families = [(f, insts) for f, insts in families if insts]
    bar = tqdm(total=len(chosen) * clips_per_class, desc="instruments corpus", unit="clip", disable=not progress)
    with tempfile.TemporaryDirectory(prefix="rbl-corpus-") as tmp:
        for family, insts in families:
            plan = []
            for inst in insts:
                clips = []
                for k in range(clips_per_class):
                    rng = np.random.default_rng([seed, 1, leaves.index(inst.name), k])
                    seconds = float(rng.uniform(1.0, 4.0))
                    clips.append(
                        (
                            seconds,
                            _notes(rng, inst, family in _POLYPHONIC, seconds),
                            int(rng.integers(0, 61)),
                            int(rng.integers(0, 41)),
                        )
                    )
                plan.append((inst, clips))
            bar.set_postfix_str(f"rendering {family}")
            mono, spans = _render_family(fluidsynth, soundfont, family, plan, sample_rate, Path(tmp))
            for inst, inst_spans in zip(insts, spans):
                taxonomy.append((family, inst.name))
                for k, (a, b) in enumerate(inst_spans):
                    rng = np.random.default_rng([seed, 2, leaves.index(inst.name), k])
                    rel = f"{family}/{inst.name}/{inst.name}_{k:03d}.wav"
                    _write_wav(out / "audio" / rel, _finish(mono[a:b], rng, sample_rate, rel), sample_rate)
                    annotations.append([rel, inst.name])
                    bar.update()
    bar.close()
    info = {
        "kind": "instruments",
        "seed": seed,
        "clips_per_class": clips_per_class,
        "sample_rate": sample_rate,
        "classes": len(taxonomy),
        "clips": len(annotations),
        "soundfont": str(soundfont),
        "soundfont_bytes": soundfont.stat().st_size,
        "fluidsynth": _version([fluidsynth, "--version"]),
    }
    _write_tables(out, ["family", "instrument"], taxonomy, annotations, info)


# --------------------------------------------------------------------------- speech


def _number_text(rng: np.random.Generator) -> str:
    """1-3 random numbers of 2-4 digits: about 1 to 6 s of speech."""
    numbers = []
    for _ in range(int(rng.integers(1, 4))):
        digits = int(rng.integers(2, 5))
        numbers.append(str(int(rng.integers(10 ** (digits - 1), 10**digits))))
    return ", ".join(numbers)


def generate_speech(
    out: str | os.PathLike,
    clips_per_class: int = DEFAULT_CLIPS_PER_CLASS["speech"],
    seed: int = 0,
    *,
    classes: Iterable[str] | None = None,
    progress: bool = True,
) -> None:
    """Write the `speech` corpus (family -> language -> voice) under `out`.

    `classes` restricts it to some voices (leaf names such as 'de_m1', see `speech_voices()`).
    """
    clips_per_class, seed = _check_size(clips_per_class, seed)
    out = Path(out)
    voices = speech_voices()
    leaves = [v for _, _, v in voices]
    chosen = _select(leaves, classes, "speech")
    espeak = _require_program("espeak-ng", "speech")
    rows = [row for row in voices if row[2] in chosen]

    annotations: list[list[str]] = []
    sr = SAMPLE_RATE
    with tempfile.TemporaryDirectory(prefix="rbl-corpus-") as tmp:
        tmp_wav = Path(tmp) / "say.wav"
        bar = tqdm(total=len(rows) * clips_per_class, desc="speech corpus", unit="clip", disable=not progress)
        for family, language, voice in rows:
            variant = voice.split("_", 1)[1]
            for k in range(clips_per_class):
                rng = np.random.default_rng([seed, 3, leaves.index(voice), k])
                text = _number_text(rng)
                rate, pitch = int(rng.integers(140, 201)), int(rng.integers(42, 59))
                _run(
                    [
                        espeak,
                        "-v",
                        f"{_ESPEAK_VOICE[language]}+{variant}",
                        "-s",
                        str(rate),
                        "-p",
                        str(pitch),
                        "-w",
                        str(tmp_wav),
                        text,
                    ],
                    f"speech clip {voice} {k}",
                )
                try:
                    audio, rate_read = sf.read(tmp_wav, dtype="float64", always_2d=True)
                except (RuntimeError, sf.LibsndfileError) as err:
                    raise InputError(f"espeak-ng wrote no readable audio for {voice} ({err}); {INSTALL}") from None
                speech = audio.mean(axis=1)
                if rate_read != sr:
                    raise InputError(f"espeak-ng wrote {rate_read} Hz audio, expected {sr} Hz")
                onset = np.zeros(int(rng.uniform(0.0, 0.3) * sr))
                x = np.concatenate([onset, speech])
                rms = float(np.sqrt(np.mean(speech**2)))
                x = x + rms * 10 ** (-rng.uniform(30.0, 45.0) / 20) * _pink(rng, x.size, sr)
                rel = f"{family}/{language}/{voice}/{voice}_{k:03d}.wav"
                _write_wav(out / "audio" / rel, _finish(x, rng, sr, rel), sr)
                annotations.append([rel, voice])
                bar.update()
        bar.close()
    info = {
        "kind": "speech",
        "seed": seed,
        "clips_per_class": clips_per_class,
        "sample_rate": sr,
        "classes": len(rows),
        "clips": len(annotations),
        "espeak_ng": _version([espeak, "--version"]),
    }
    _write_tables(out, ["family", "language", "voice"], rows, annotations, info)


#: corpus name -> generator(out, clips_per_class, seed, *, classes=None, progress=True)
CORPORA: dict[str, Callable[..., None]] = {"instruments": generate_instruments, "speech": generate_speech}
