"""Keyword spotting's data: WAV reading and its refusals, the MFCC front end against tf.signal, the Speech Commands
layout in MLPerf Tiny's 12 classes, the synthetic set spoken by espeak-ng, DS-CNN's description."""
import os
import shutil
import wave

import numpy as np
import pytest

from edgepack.toolkit.data.audio import (CLIP_SAMPLES, SILENCE, UNKNOWN, MfccFrontEnd, fit_clip, read_speech_folder,
                                read_wav, write_wav)
from edgepack.toolkit.errors import DataError


def _clips(n=6, seed=0):
    """Chirps, tones and noise bursts at varied levels: speech-like spectra without a synthesizer."""
    rng = np.random.default_rng(seed)
    t = np.arange(CLIP_SAMPLES) / 16000
    out = []
    for i in range(n):
        f0, f1 = rng.uniform(100, 600), rng.uniform(800, 3500)
        x = np.sin(2 * np.pi * (f0 + (f1 - f0) * t / 2) * t) * np.exp(-((t - rng.uniform(0.2, 0.8)) / 0.15) ** 2)
        x = x + rng.uniform(0.001, 0.05) * rng.standard_normal(len(t))
        out.append(np.round(x / np.abs(x).max() * rng.uniform(0.1, 0.9) * 32767).astype(np.int16))
    return np.stack(out)


def test_front_end_matches_tf_signal():
    """The NumPy front end against MLPerf Tiny's tf.signal pipeline (stft, mel matrix, log, mfccs_from_log_mel)."""
    from edgepack.toolkit.tf_import import import_tensorflow
    tf = import_tensorflow()
    clips = _clips()
    ours = MfccFrontEnd()(clips)
    x = tf.constant(clips.astype(np.float32) / 32768.0)
    x = x / tf.reduce_max(tf.abs(x), axis=1, keepdims=True)
    stft = tf.signal.stft(x, frame_length=640, frame_step=320, fft_length=None, window_fn=tf.signal.hann_window)
    mel_w = tf.signal.linear_to_mel_weight_matrix(40, stft.shape[-1], 16000, 20.0, 4000.0)
    logmel = tf.math.log(tf.tensordot(tf.abs(stft), mel_w, 1) + 1e-6)
    ref = tf.signal.mfccs_from_log_mel_spectrograms(logmel)[..., :10].numpy()
    assert ours.shape == ref.shape == (6, 49, 10)
    assert np.abs(MfccFrontEnd().mel_matrix() - mel_w.numpy()).max() < 1e-4
    # float32 (tf) against float64 FFT (NumPy): 7e-5 on features spanning about -120..30
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()
    assert np.abs(ours - ref).max() < 0.01


def test_front_end_is_level_invariant_and_takes_floats():
    fe = MfccFrontEnd()
    c = _clips(1)[0]
    a = fe(c)
    b = fe((c // 4).astype(np.int16))
    assert a.shape == (49, 10)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()                  # peak normalisation: level drops out
    assert np.allclose(fe(c.astype(np.float32) / 32768.0), a, atol=1e-3)
    assert np.isfinite(fe(np.zeros(CLIP_SAMPLES, np.int16))).all()      # digital silence: no division by zero
    with pytest.raises(DataError, match="16000 samples"):
        fe(np.zeros(8000, np.int16))


def test_wav_refusals_and_padding(tmp_path):
    good = tmp_path / "good.wav"
    write_wav(good, _clips(1)[0])
    assert read_wav(good).shape == (CLIP_SAMPLES,)

    def raw_wav(path, channels=1, width=2, rate=16000, frames=16000):
        with wave.open(str(path), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(rate)
            w.writeframes(b"\x01" * frames * channels * width)
        return path
    for path, pattern in ((raw_wav(tmp_path / "st.wav", channels=2), "2 channels; .*mono"),
                          (raw_wav(tmp_path / "r8.wav", rate=8000), "8000 Hz; .*16000 Hz"),
                          (raw_wav(tmp_path / "b8.wav", width=1), "8-bit samples")):
        with pytest.raises(DataError, match=pattern) as e:
            read_wav(path)
        assert "\n" not in str(e.value) and path.name in str(e.value)
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    with pytest.raises(DataError, match="not a readable WAV"):
        read_wav(tmp_path / "junk.wav")
    padded, was = fit_clip(np.ones(12000, np.int16), "short.wav")
    assert was and len(padded) == CLIP_SAMPLES and padded[12000:].sum() == 0 and padded[:12000].sum() == 12000
    with pytest.raises(DataError, match=r"long.wav: 1\.500 s long"):
        fit_clip(np.ones(24000, np.int16), "long.wav")


def _speech_folder(root, words=("yes", "no"), others=("cat",), per=10, noise=True):
    """A tiny hand-made Speech Commands folder: two speakers per split."""
    clips = _clips(per * (len(words) + len(others)), seed=3)
    i, val, test = 0, [], []
    for w in words + others:
        (root / w).mkdir(parents=True)
        for k in range(per):
            speaker = f"spk{k % 5}"
            name = f"{speaker}_nohash_{k}.wav"
            x = clips[i][:12000] if k == 0 else clips[i]                 # one short clip per word: padded
            write_wav(root / w / name, x)
            i += 1
            (test if speaker == "spk0" else val if speaker == "spk1" else []).append(f"{w}/{name}")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    if noise:
        (root / "_background_noise_").mkdir()
        write_wav(root / "_background_noise_" / "white.wav",
                  (np.random.default_rng(0).standard_normal(3 * CLIP_SAMPLES) * 3000).astype(np.int16))
    return root


def test_speech_commands_layout_in_mlperf_classes(tmp_path):
    root = _speech_folder(tmp_path / "sc")
    got = read_speech_folder(root, words=("yes", "no"))
    assert got["classes"] == ["yes", "no", SILENCE, UNKNOWN]
    train_x, train_y = got["splits"]["train"]
    test_x, test_y = got["splits"]["test"]
    # test: speaker spk0 said each word twice (k = 0, 5): 4 word clips; unknown and silence round(10%) = 0 each
    assert sorted(test_y) == [0, 0, 1, 1]
    # train: spk2-4, 6 clips per word: 12 word clips, round(1.2) = 1 unknown and 1 silence
    assert sorted(np.bincount(train_y, minlength=4)) == [1, 1, 6, 6]
    assert train_x.shape[1] == CLIP_SAMPLES and train_x.dtype == np.int16
    assert any("zero-padded" in n for n in got["notes"])
    silence = train_x[train_y == 2][0]
    assert np.abs(silence).max() <= 3000 * 6                              # a background crop at volume <= 1
    # an empty label folder, a missing keyword: one line each
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="empty: a label folder with no .wav clip"):
        read_speech_folder(root, words=("yes", "no"))
    shutil.rmtree(root / "empty")
    with pytest.raises(DataError, match="no folder for the keyword.*left"):
        read_speech_folder(root, words=("yes", "left"))


def test_a_speech_folder_loads_by_name_as_features(tmp_path):
    from edgepack.toolkit.data import load_dataset
    root = _speech_folder(tmp_path / "mywords", words=tuple(["down", "go", "left", "no", "off", "on", "right",
                                                                 "stop", "up", "yes"]), per=5)
    ds = load_dataset("mywords", root)
    assert ds.input_shape == (49, 10, 1) and ds.num_classes == 12 and ds.modality == "audio"
    assert ds.preprocessing()["front_end"]["name"] == "mfcc-mlperf-tiny" and ds.scale == 1.0
    # the features the set holds are the front end's output of the clips it keeps
    assert np.allclose(ds.features(ds.clips_test), ds.x_test, atol=1e-4)
    tr, va = ds.split()
    assert len(va) == int(ds.val_mask.sum()) > 0 and not set(tr) & set(va)
    again = load_dataset("mywords", root)                               # the cached features, the same hash
    assert again.test_sha256() == ds.test_sha256()


def test_ds_cnn_is_mlperf_tinys_reference():
    """Parameter count against MLPerf Tiny's Keras definition (keyword_spotting/keras_model.py, 'ds_cnn'),
    written out here layer by layer; our description built in both frameworks."""
    from edgepack.toolkit.arch import get_arch
    from edgepack.toolkit.backends import get_backend
    from edgepack.toolkit.tf_import import import_tensorflow
    tf = import_tensorflow()
    L = tf.keras.layers
    x = inp = tf.keras.Input((49, 10, 1))
    x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same")(x)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    x = L.Dropout(0.2)(x)
    for _ in range(4):
        x = L.Activation("relu")(L.BatchNormalization()(L.DepthwiseConv2D((3, 3), padding="same")(x)))
        x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(64, (1, 1), padding="same")(x)))
    x = L.AveragePooling2D(pool_size=(25, 5))(L.Dropout(0.4)(x))
    ref = tf.keras.Model(inp, L.Dense(12)(L.Flatten()(x)))
    spec = get_arch("ds-cnn")
    counts = spec.counts()
    assert counts["total"] == ref.count_params()
    assert counts["trainable"] == int(sum(np.prod(w.shape) for w in ref.trainable_weights))
    assert spec.walk()[0].out_shape == (25, 5, 64)
    for fw in ("torch", "keras"):
        b = get_backend(fw)
        m = b.build(spec, seed=0)
        assert b.count_params(m)["trainable"] == counts["trainable"]
        out = b.predict_outputs(m, np.zeros((2, 49, 10, 1) if b.LAYOUT == "NHWC" else (2, 1, 49, 10), np.float32))
        assert next(iter(out.values())).shape == (2, 12)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        if os.environ.get("EDGEPACK_REQUIRE_DATA") == "1":
            pytest.fail("espeak-ng is not installed (make test installs it as root: apt-get install espeak-ng)")
        pytest.skip("espeak-ng is not installed")
    from edgepack.toolkit.data.speech_synth import make_synthetic_speech
    root = tmp_path_factory.mktemp("synth")
    summary = make_synthetic_speech(root, per_word=10, speakers=10, seed=1)
    return root, summary


def test_synthetic_set_is_speech_commands_layout_and_says_synthetic(synth):
    root, summary = synth
    from edgepack.toolkit.data.audio import is_speech_folder
    assert is_speech_folder(root) and summary["clips"] == 10 * 10 + 10 * 3
    assert "SYNTHETIC SPEECH" in (root / "README.txt").read_text() and "NOT Google Speech Commands" in (root / "README.txt").read_text()
    speakers = {s: {ln.split("/")[1].split("_")[0] for ln in (root / f).read_text().split()}
                for s, f in (("test", "testing_list.txt"), ("val", "validation_list.txt"))}
    train = {p.name.split("_")[0] for p in root.glob("*/*.wav") if not p.parent.name.startswith("_")} - speakers["test"] - speakers["val"]
    assert speakers["test"] and train and not speakers["test"] & train        # test voices are never trained on
    x = read_wav(next((root / "yes").glob("*.wav")))
    assert len(x) == CLIP_SAMPLES and 0.1 * 32767 < np.abs(x).max() < 32767
    rms = np.sqrt((x.astype(float).reshape(50, 320) ** 2).mean(1))        # 20 ms frames
    active = rms > 0.2 * rms.max()
    assert 0.1 < active.mean() < 0.9                                          # a word in a second, not noise or silence
    again = root.parent / "again"
    from edgepack.toolkit.data.speech_synth import make_synthetic_speech
    make_synthetic_speech(again, per_word=10, speakers=10, seed=1)
    assert read_wav(again / "yes" / next((root / "yes").glob("*.wav")).name).tobytes() == x.tobytes()  # seeded


def test_keyword_spotting_task_reads_audio_sets_only(tmp_path):
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.data.dataset import Dataset
    from edgepack.toolkit.errors import ModelError
    from edgepack.toolkit.tasks import get_task, infer_task
    kws = get_task("keyword-spotting")
    images = Dataset("pics", "here", np.zeros((4, 8, 8, 1), np.uint8), np.arange(4) % 2, np.zeros((2, 8, 8, 1), np.uint8),
                     np.arange(2), ["a", "b"], (0.5,), (0.2,))
    with pytest.raises(ModelError, match="pics: keyword spotting reads an audio set"):
        kws.view(images)
    assert infer_task({"logits": (-1, 2)}, images, "m").name == "classification"
    root = _speech_folder(tmp_path / "w", words=("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"),
                          per=5)
    ds = load_dataset("w", root)
    assert infer_task({"logits": (-1, 12)}, ds, "m").name == "keyword-spotting"     # an audio set's classifier
    logits = np.eye(12, dtype=np.float32)[ds.y_test]
    q = kws.quality({"logits": logits}, ds.normalize(ds.x_test), ds.y_test, ds)
    assert q["value"] == 1.0 and q["front_end"]["clips"] == len(ds.y_test) and q["front_end"]["p50_ms"] > 0
    assert len(q["examples"]["labels"]) == min(4, len(set(ds.y_test.tolist())))
    assert "front end mfcc-mlperf-tiny" in kws.quality_line(q)
    assert kws.plot([("m.onnx", q)], tmp_path / "k.png") and (tmp_path / "k.png").stat().st_size > 1000


def test_audio_golden_vectors_recompute_features_on_the_device(tmp_path):
    """A bundle of an audio model carries the golden clips and the front end: the device makes the features itself,
    and a front end that computes other features there fails the check in one line before any timing counts."""
    from edgepack.benchmarks.golden import check, device_inputs, save_golden
    from edgepack.toolkit.data import load_dataset
    root = _speech_folder(tmp_path / "w", words=("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"),
                          per=5)
    ds = load_dataset("w", root)
    x, y = ds.test_subset(8, seed=1)
    raw = ds.golden_raw(8, seed=1)
    assert len(raw["clips"]) == len(x)
    save_golden(tmp_path / "golden.npz", ds.normalize(x), y, {"logits": np.zeros((len(x), 12), np.float32)}, **raw)
    g = np.load(tmp_path / "golden.npz")
    here, fe = device_inputs(g)
    assert fe["front_end"] == "mfcc-mlperf-tiny" and fe["max_abs_diff"] < 1e-4
    assert np.abs(here - g["x"]).max() < 1e-4
    bad = dict(g)
    bad["clips"] = g["clips"][:, ::-1].copy()                    # another device's feature computation, in effect
    bundle = {"_folder": tmp_path, "_golden": type("G", (), {"files": list(bad), "__getitem__": lambda s, k: bad[k]})()}
    out = check(bundle, {"file": "m.tflite", "sha256": "x", "tolerance": {"max_abs_diff": 1.0}})
    assert not out["passed"] and "front end computes other features on this device" in out["error"]
    assert "\n" not in out["error"]
    assert ds.__class__.__mro__[1].golden_raw(ds, 8, 1) == {}     # image sets carry no raw inputs


def test_a_keyword_model_trains_and_compresses_as_a_keyword_spotter(tmp_path):
    """No --task anywhere: an audio set's classifier is recorded as a keyword spotter, and compression keeps it so."""
    import json
    from edgepack.toolkit.api import TrainConfig, train
    from pathlib import Path
    from edgepack.toolkit.compress import compress
    from edgepack.toolkit.compress.steps import parse_steps
    from edgepack.toolkit.data import load_dataset
    root = _speech_folder(tmp_path / "w", words=("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"),
                          per=5)
    ds = load_dataset("w", root)
    res = train("torch", "ds-cnn", ds, out=tmp_path / "t", config=TrainConfig(epochs=1, batch_size=16), verbose=False)
    assert json.loads((tmp_path / "t" / "model.pt.json").read_text())["task"] == {"name": "keyword-spotting"}
    ckpt = compress(res.checkpoint, parse_steps("prune(sparsity=0.5,epochs=1)"), tmp_path / "c", data="w",
                    data_dir=str(root), verbose=False)
    rec = json.loads(Path(str(ckpt) + ".json").read_text())
    assert rec["task"] == {"name": "keyword-spotting"} and [s["step"] for s in rec["steps"]] == ["train", "prune"]


def test_a_speech_commands_tarball_loads_like_its_folder(tmp_path):
    """The official download is a tarball with the word folders at its top: read from it as from the folder."""
    import tarfile
    from edgepack.toolkit.data import load_dataset
    root = _speech_folder(tmp_path / "sc", words=("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"),
                          per=5)
    tarball = tmp_path / "speech_commands_v0.02.tar.gz"
    with tarfile.open(tarball, "w:gz") as t:
        for p in sorted(root.rglob("*")):
            t.add(p, arcname=f"./{p.relative_to(root)}", recursive=False)
    a, b = load_dataset("speech-commands", root), load_dataset("speech-commands", tarball)
    assert a.test_sha256() == b.test_sha256() and a.sha256() == b.sha256() and a.classes == b.classes
