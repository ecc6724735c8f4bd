"""Audio for keyword spotting: 16 kHz mono WAV clips, MLPerf Tiny's MFCC front end, the Speech Commands layout.

The front end (`MfccFrontEnd`) is NumPy only and is the one feature computation everywhere: the training sets of
both frameworks are its output, the bench harness and a device's runtime-only install call it on WAVs, and a bundle's
golden vectors are its features. It is MLPerf Tiny's (`keyword_spotting/get_dataset.py`, `tf.signal`): 40 ms Hann
windows every 20 ms (49 frames of a one-second clip), |FFT| of 1,024 points, 40 mel bands from 20 Hz to 4 kHz (HTK
mel scale), log(x + 1e-6), orthonormal DCT-II, the first 10 coefficients. One difference, on purpose: a clip is
peak-normalised by its largest *magnitude* (MLPerf divides by its largest sample value, which flips or blows up a
clip whose samples are all <= 0); on speech the two agree. `tests/test_audio.py` holds it to `tf.signal`.

A data set in the Speech Commands v2 layout (a folder per word of WAVs, `validation_list.txt`, `testing_list.txt`,
`_background_noise_/`) is read into MLPerf Tiny's 12 classes: the ten words, `_silence_` and `_unknown_`, as
TensorFlow's speech_commands example samples them (per split, silence and unknown each 10% of the word clips;
unknown drawn from the other words' clips, silence from one-second background crops at a random volume), seeded.
"""
from __future__ import annotations

import io
import json
import math
import wave
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from edgepack.toolkit.data.dataset import Dataset, stratified_indices
from edgepack.toolkit.errors import DataError

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000                                  # one second
MLPERF_WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
BACKGROUND = "_background_noise_"
SILENCE_PERCENT = UNKNOWN_PERCENT = 10.0               # TensorFlow's speech_commands example (and MLPerf Tiny's set-up)


# ---------------------------------------------------------------- the front end
@dataclass(frozen=True)
class MfccFrontEnd:
    """MLPerf Tiny's MFCC features of one-second clips: (N, samples) floats -> (N, frames, coefficients)."""
    sample_rate: int = SAMPLE_RATE
    clip_samples: int = CLIP_SAMPLES
    window: int = 640                 # 40 ms
    stride: int = 320                 # 20 ms
    fft: int = 1024                   # tf.signal.stft's default: the next power of two above the window
    mel_bins: int = 40
    lower_hz: float = 20.0
    upper_hz: float = 4000.0
    coefficients: int = 10
    log_offset: float = 1e-6
    name: str = "mfcc-mlperf-tiny"

    @property
    def frames(self) -> int:
        return 1 + (self.clip_samples - self.window) // self.stride

    @property
    def shape(self) -> tuple[int, int, int]:
        """One clip's features as model input (H, W, C): frames x coefficients x 1."""
        return (self.frames, self.coefficients, 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MfccFrontEnd":
        known = {k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def mel_matrix(self) -> np.ndarray:
        """(fft // 2 + 1, mel_bins) triangular weights, `tf.signal.linear_to_mel_weight_matrix`'s construction."""
        bins = self.fft // 2 + 1
        hz_to_mel = lambda f: 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)  # noqa: E731
        linear = np.linspace(0.0, self.sample_rate / 2, bins)[1:]          # the DC bin gets no weight
        mel = hz_to_mel(linear)[:, None]
        edges = np.linspace(hz_to_mel(self.lower_hz), hz_to_mel(self.upper_hz), self.mel_bins + 2)
        lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
        w = np.maximum(0.0, np.minimum((mel - lower) / (centre - lower), (upper - mel) / (upper - centre)))
        return np.vstack([np.zeros((1, self.mel_bins)), w])

    def dct_matrix(self) -> np.ndarray:
        """(mel_bins, coefficients): `tf.signal.mfccs_from_log_mel_spectrograms` (DCT-II scaled by 1/sqrt(2 N)),
        the first coefficients."""
        n = self.mel_bins
        k = np.arange(self.coefficients)[:, None]
        return (2.0 * np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n)) / math.sqrt(2 * n)).T

    @cached_property
    def _matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.window) / self.window)).astype(np.float32)  # periodic
        return hann, self.mel_matrix(), self.dct_matrix()

    def __call__(self, clips: np.ndarray, batch: int = 512) -> np.ndarray:
        """Features of clips (N, clip_samples) (or one clip), float in [-1, 1] or int16, as float32 (N, frames,
        coefficients)."""
        x = np.asarray(clips)
        one = x.ndim == 1
        x = x[None] if one else x
        if x.shape[-1] != self.clip_samples:
            raise DataError(f"the front end takes clips of {self.clip_samples} samples, got {x.shape[-1]}")
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        hann, mel_w, dct = self._matrices
        out = np.empty((len(x), self.frames, self.coefficients), np.float32)
        for i in range(0, len(x), batch):
            chunk = x[i:i + batch].astype(np.float32)
            peak = np.abs(chunk).max(axis=1, keepdims=True)
            chunk = chunk / np.where(peak > 0, peak, 1.0)
            frames = np.lib.stride_tricks.sliding_window_view(chunk, self.window, axis=1)[:, ::self.stride][:, :self.frames]
            spec = np.abs(np.fft.rfft(frames * hann, n=self.fft, axis=-1))
            logmel = np.log(spec @ mel_w + self.log_offset)
            out[i:i + batch] = logmel @ dct
        return out[0] if one else out


# ---------------------------------------------------------------- WAV files
def read_wav(path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 16-bit PCM mono WAV at `rate` Hz as int16 samples; anything else is refused in one line naming the file."""
    try:
        with wave.open(str(path), "rb") as w:
            ch, width, fr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable WAV file ({e})") from None
    if width != 2:
        raise DataError(f"{path}: {8 * width}-bit samples; keyword spotting reads 16-bit PCM WAV "
                        f"(convert it: sox IN -b 16 OUT.wav)")
    if ch != 1:
        raise DataError(f"{path}: {ch} channels; keyword spotting reads mono clips (mix it down: sox IN -c 1 OUT.wav)")
    if fr != rate:
        raise DataError(f"{path}: sampled at {fr} Hz; keyword spotting reads {rate} Hz clips "
                        f"(resample it: sox IN -r {rate} OUT.wav)")
    return np.frombuffer(data, "<i2").copy()


def fit_clip(x: np.ndarray, where, samples: int = CLIP_SAMPLES) -> tuple[np.ndarray, bool]:
    """A clip as exactly one second: a shorter one zero-padded at its end (Speech Commands holds many; MLPerf Tiny pads
    them so), a longer one refused in one line. Returns (clip, padded)."""
    if len(x) > samples:
        raise DataError(f"{where}: {len(x) / SAMPLE_RATE:.3f} s long; a keyword clip is at most "
                        f"{samples / SAMPLE_RATE:g} s (cut it, e.g. sox IN OUT.wav trim 0 1)")
    if len(x) == 0:
        raise DataError(f"{where}: holds no samples")
    if len(x) == samples:
        return x, False
    return np.concatenate([x, np.zeros(samples - len(x), x.dtype)]), True


def write_wav(path, x: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """int16 mono samples as a 16-bit PCM WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(x, "<i2").tobytes())


def wav_bytes_to_int16(data: bytes) -> tuple[np.ndarray, int]:
    """A WAV in memory (espeak-ng's --stdout, whose header gives no true length) as int16 samples and its rate."""
    with wave.open(io.BytesIO(data), "rb") as w:
        rate = w.getframerate()
        body = w.readframes(w.getnframes())
    return np.frombuffer(body[:len(body) // 2 * 2], "<i2").copy(), rate


# ---------------------------------------------------------------- the Speech Commands layout
def is_speech_folder(root: Path) -> bool:
    root = Path(root)
    return root.is_dir() and (root / "testing_list.txt").is_file() and any(
        p.is_dir() and not p.name.startswith("_") and any(p.glob("*.wav")) for p in root.iterdir())


def _read_list(path: Path) -> set[str]:
    return {ln.strip() for ln in path.read_text().splitlines() if ln.strip()} if path.is_file() else set()


def read_speech_folder(root: Path, words=MLPERF_WORDS, seed: int = 0, progress=None) -> dict:
    """The clips of a Speech Commands folder in MLPerf Tiny's 12 classes, per split: {"train"|"validation"|"test":
    (int16 clips (N, 16000), labels (N,))}, the class names and notes. Every word folder is read; a folder with no
    WAV, a word of `words` missing, or a split without a word clip is refused in one line."""
    root = Path(root)
    classes = list(words) + [SILENCE, UNKNOWN]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    empty = [p.name for p in folders if not any(p.glob("*.wav"))]
    if empty:
        raise DataError(f"{root / empty[0]}: a label folder with no .wav clip ({len(empty)} such: "
                        f"{', '.join(empty[:5])}); remove it or fill it")
    missing = [w for w in words if not (root / w).is_dir()]
    if missing:
        raise DataError(f"{root}: no folder for the keyword(s) {', '.join(missing)}; a Speech Commands folder holds "
                        "one folder of WAVs per word")
    val, test = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    files = {"train": [], "validation": [], "test": []}
    for folder in folders:
        label = classes.index(folder.name) if folder.name in words else classes.index(UNKNOWN)
        for f in sorted(folder.glob("*.wav")):
            rel = f"{folder.name}/{f.name}"
            files["test" if rel in test else "validation" if rel in val else "train"].append((f, label))
    noise = [read_wav(p) for p in sorted((root / BACKGROUND).glob("*.wav"))] if (root / BACKGROUND).is_dir() else []
    noise = [n for n in noise if len(n) >= CLIP_SAMPLES]
    rng = np.random.default_rng(seed)
    unknown_label, silence_label = classes.index(UNKNOWN), classes.index(SILENCE)
    out, padded = {}, 0
    total = sum(len(v) for v in files.values())
    done = 0
    for split, items in files.items():
        word_items = [it for it in items if it[1] != unknown_label]
        if not word_items:
            raise DataError(f"{root}: the {split} split holds no clip of the keywords (validation_list.txt and "
                            "testing_list.txt name a split's clips)")
        others = [it for it in items if it[1] == unknown_label]
        n_unknown = min(len(others), int(round(len(word_items) * UNKNOWN_PERCENT / 100)))
        n_silence = int(round(len(word_items) * SILENCE_PERCENT / 100))
        picked = word_items + [others[i] for i in np.sort(rng.choice(len(others), n_unknown, replace=False))]
        clips = np.zeros((len(picked) + n_silence, CLIP_SAMPLES), np.int16)
        labels = np.empty(len(picked) + n_silence, np.int64)
        for i, (f, label) in enumerate(picked):
            clips[i], was_padded = fit_clip(read_wav(f), f)
            padded += was_padded
            labels[i] = label
            done += 1
            if progress is not None and done % 2000 == 0:
                progress(done, total)
        for j in range(n_silence):
            i = len(picked) + j
            if noise:
                src = noise[rng.integers(len(noise))]
                start = rng.integers(len(src) - CLIP_SAMPLES + 1)
                clips[i] = (src[start:start + CLIP_SAMPLES] * rng.uniform(0, 1)).astype(np.int16)
            labels[i] = silence_label
        out[split] = (clips, labels)
    notes = []
    if padded:
        notes.append(f"{padded} clip(s) shorter than one second, zero-padded at the end")
    if not noise:
        notes.append(f"no {BACKGROUND}/ clips of one second or more: _silence_ clips are digital silence")
    return {"splits": out, "classes": classes, "notes": notes}


# ---------------------------------------------------------------- the in-memory set
@dataclass
class AudioSet(Dataset):
    """A keyword set as models read it: the front end's features as (N, frames, coefficients, 1) float32 "images"
    (what both frameworks train on and every runtime is fed), the labels, the front end that made them, and the test
    clips themselves (int16), which the harness times the front end on and a device recomputes features from."""
    front_end: dict = field(default_factory=dict)
    clips_test: np.ndarray | None = None
    val_mask: np.ndarray | None = None      # training rows in the set's own validation split
    modality = "audio"                      # the task that reads audio by default says so (Task.default_for)

    def preprocessing(self) -> dict:
        return {**super().preprocessing(), "front_end": dict(self.front_end)}

    @cached_property
    def front_end_fn(self) -> MfccFrontEnd:
        return MfccFrontEnd.from_dict(self.front_end)

    def features(self, clips: np.ndarray) -> np.ndarray:
        """Model input features of int16 clips (N, samples), before mean/std: what the data set holds."""
        return self.front_end_fn(clips)[..., None]

    def golden_raw(self, n: int, seed: int) -> dict:
        """What a bundle's golden vectors carry besides the features of `test_subset(n, seed)`: those clips and the
        front end and preprocessing that made model input of them, so a device recomputes the features itself."""
        idx = stratified_indices(self.y_test, n, seed)
        return {"clips": np.asarray(self.clips_test[idx]), "front_end": np.array(json.dumps(self.preprocessing()))}

    def split(self, val_fraction: float = 0.1, seed: int = 0):
        """The set's own validation split (validation_list.txt) when it has one, else a seeded random one."""
        if self.val_mask is not None and self.val_mask.any():
            return np.flatnonzero(~self.val_mask), np.flatnonzero(self.val_mask)
        return super().split(val_fraction, seed)

    def describe(self) -> str:
        what = f"{self.name} from {self.source}"
        return (f"data: {what}: {len(self.y_train):,} train / {len(self.y_test):,} test clips "
                f"({self.front_end.get('name', 'features')} {'x'.join(str(s) for s in self.input_shape[:2])}), "
                f"{self.num_classes} classes, test sha256 {self.test_sha256()[:12]}")


def feature_stats(x: np.ndarray) -> tuple[tuple[float], tuple[float]]:
    """One mean and std over every training feature (the front end's output has one channel)."""
    return (float(x.mean()),), (float(max(x.std(), 1e-6)),)
