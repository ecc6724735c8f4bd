"""The synthetic keyword set, made offline: Debian's espeak-ng speaking MLPerf Tiny's ten words and ten other words in
varied voices, pitch and speed, placed at a random point of a one-second 16 kHz clip at a random level, over
background noise, written in the Speech Commands v2 layout (so it is read exactly as the real set is).

It is SYNTHETIC SPEECH, not Speech Commands: every record names it `synthetic-speech`, and its README says so.
Speakers (a voice, a variant, a base pitch and speed) are split between train, validation and test (a fifth of
them test, a tenth validation) as Speech Commands splits its speakers, so the test voices are voices training never heard.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgepack.toolkit.data.audio import BACKGROUND, CLIP_SAMPLES, MLPERF_WORDS, SAMPLE_RATE, wav_bytes_to_int16, write_wav
from edgepack.toolkit.errors import DataError

OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "Alex", "Andy", "Annie", "belinda", "david", "ed", "john", "linda", "Mike", "paul", "robert", "steph",
            "travis", "victor", "grandma", "grandpa", "croak")
NOISES = ("white", "pink", "brown", "hum")
SYNTH = {"per_word": 600, "speakers": 64, "seed": 0}       # the published set: 6,000 keyword + 2,000 other clips


def espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("synthetic-speech is spoken by espeak-ng, which is not installed (Debian/Ubuntu: "
                        "apt-get install espeak-ng; `make setup` installs it where it can)")
    return exe


def _noise(kind: str, n: int, rng) -> np.ndarray:
    if kind == "hum":                                    # mains hum with harmonics, and a little hiss
        t = np.arange(n) / SAMPLE_RATE
        x = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3, 5))
        x = x + 0.1 * rng.standard_normal(n)
    else:
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 1.0)
        spec *= {"white": 1.0, "pink": 1 / np.sqrt(f), "brown": 1 / f}[kind]
        x = np.fft.irfft(spec, n)
    return (x / np.abs(x).max() * 0.5 * 32767).astype(np.int16)


def _speak(exe: str, word: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """espeak-ng's utterance of one word at 16 kHz, float in [-1, 1], leading and trailing silence cut."""
    from scipy.signal import resample_poly
    r = subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", word],
                       capture_output=True, timeout=30, check=False)
    if r.returncode != 0 or len(r.stdout) < 100:
        raise DataError(f"espeak-ng failed for voice {voice}: {r.stderr.decode(errors='replace').strip()[:160]}")
    x, rate = wav_bytes_to_int16(r.stdout)
    x = x.astype(np.float64) / 32768.0
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, rate // g)
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    return x[loud[0]:loud[-1] + 1] if len(loud) else x


def make_synthetic_speech(dest: Path, per_word: int = SYNTH["per_word"], speakers: int = SYNTH["speakers"],
                          seed: int = SYNTH["seed"], progress=None) -> dict:
    """Write the set into `dest` (an empty folder): `<word>/<speaker>_nohash_<k>.wav`, `validation_list.txt`,
    `testing_list.txt`, `_background_noise_/*.wav`, `README.txt`. Each of the ten keywords gets `per_word` clips,
    each other word a third of that; a fifth of the speakers is test, a tenth validation. Returns a summary."""
    exe = espeak()
    dest = Path(dest)
    rng = np.random.default_rng(seed)
    (dest / BACKGROUND).mkdir(parents=True, exist_ok=True)
    noises = {k: _noise(k, 60 * SAMPLE_RATE, rng) for k in NOISES}
    for k, x in noises.items():
        write_wav(dest / BACKGROUND / f"{k}_noise.wav", x)
    people = []
    for i in range(speakers):
        voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{VARIANTS[rng.integers(len(VARIANTS))]}"
        people.append({"id": hashlib.sha256(f"{seed}|{i}".encode()).hexdigest()[:8], "voice": voice,
                       "pitch": int(rng.integers(25, 76)), "speed": int(rng.integers(120, 191))})
    n_test, n_val = max(1, speakers // 5), max(1, speakers // 10)
    split_of = {p["id"]: ("test" if i < n_test else "validation" if i < n_test + n_val else "train")
                for i, p in enumerate(people)}
    jobs = []
    for word in MLPERF_WORDS + OTHER_WORDS:
        count = per_word if word in MLPERF_WORDS else max(1, per_word // 3)
        for k in range(count):
            p = people[rng.integers(len(people))]
            jobs.append({"word": word, "k": k, "speaker": p, "pitch": int(np.clip(p["pitch"] + rng.integers(-6, 7), 0, 99)),
                         "speed": int(p["speed"] * rng.uniform(0.9, 1.1)), "gain": rng.uniform(0.25, 0.95),
                         "noise": NOISES[rng.integers(len(NOISES))] if rng.uniform() < 0.8 else None,
                         "snr_db": rng.uniform(5, 30), "place": rng.uniform(), "noise_at": rng.uniform(),
                         "seed": int(rng.integers(2 ** 31))})

    def render(job):
        x = _speak(exe, job["word"], job["speaker"]["voice"], job["pitch"], job["speed"])
        if len(x) > CLIP_SAMPLES:                        # a slow speaker's long word: the middle second
            start = (len(x) - CLIP_SAMPLES) // 2
            x = x[start:start + CLIP_SAMPLES]
        clip = np.zeros(CLIP_SAMPLES)
        at = int(job["place"] * (CLIP_SAMPLES - len(x)))
        clip[at:at + len(x)] = x / max(np.abs(x).max(), 1e-9) * job["gain"]
        if job["noise"]:
            src = noises[job["noise"]].astype(np.float64) / 32768.0
            s = int(job["noise_at"] * (len(src) - CLIP_SAMPLES))
            bg = src[s:s + CLIP_SAMPLES]
            speech_power = np.mean(x ** 2) * (job["gain"] / max(np.abs(x).max(), 1e-9)) ** 2 * len(x) / CLIP_SAMPLES
            bg = bg * np.sqrt(speech_power / max(np.mean(bg ** 2), 1e-12) / 10 ** (job["snr_db"] / 10))
            clip = clip + bg
        clip = np.clip(clip, -1, 1 - 1 / 32768)
        name = f"{job['speaker']['id']}_nohash_{job['k']}.wav"
        (dest / job["word"]).mkdir(exist_ok=True)
        write_wav(dest / job["word"] / name, np.round(clip * 32768).astype(np.int16))
        return f"{job['word']}/{name}", split_of[job["speaker"]["id"]]

    lists = {"validation": [], "test": []}
    done = 0
    with ThreadPoolExecutor(max_workers=4) as pool:             # espeak-ng runs as child processes
        for rel, split in pool.map(render, jobs):
            if split in lists:
                lists[split].append(rel)
            done += 1
            if progress is not None and done % 500 == 0:
                progress(done, len(jobs))
    (dest / "validation_list.txt").write_text("".join(f"{r}\n" for r in sorted(lists["validation"])))
    (dest / "testing_list.txt").write_text("".join(f"{r}\n" for r in sorted(lists["test"])))
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    (dest / "README.txt").write_text(
        "SYNTHETIC SPEECH made offline by edgepack (toolkit/data/speech_synth.py), NOT Google Speech Commands.\n"
        f"Spoken by {version}; {len(jobs)} clips, {speakers} synthetic speakers (voice+variant, pitch, speed), "
        f"seed {seed}; noise: {', '.join(NOISES)} at 5-30 dB SNR in 80% of clips.\n"
        "Layout: Speech Commands v2 (a folder per word, validation_list.txt, testing_list.txt, _background_noise_/).\n")
    return {"clips": len(jobs), "speakers": speakers, "espeak": version,
            "test": len(lists["test"]), "validation": len(lists["validation"])}
