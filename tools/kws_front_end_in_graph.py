"""Issue 41's alternative measured: the MFCC front end inside the model graph (so inside the .tflite), against
edgepack's default (the front end in NumPy beside a features-in model).

    python -m tools.kws_front_end_in_graph KERAS_CHECKPOINT --data synthetic-speech --out DIR [--threads 1]

From a DS-CNN trained by edgepack in Keras it builds one Keras model: raw one-second clip (16,000 floats) -> peak
normalisation -> MLPerf Tiny's MFCC in TensorFlow ops (`tf.signal.stft`, the mel matrix and the DCT as matrix
products) -> the data set's mean/std -> the trained DS-CNN; converts it to fp32 `.tflite` and to dynamic-range
`.tflite` (int8 weights), and in the same run, in LiteRT at `--threads`: accuracy on every test clip, size, and p50
of one clip through (a) the in-graph file, (b) the NumPy front end + the features-in fp32 and full-int8 files. Writes
DIR/front_end_in_graph.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def build(checkpoint: str, ds):
    from edgepack.toolkit.api import load_checkpoint
    from edgepack.toolkit.data.audio import MfccFrontEnd
    from edgepack.toolkit.tf_import import import_tensorflow
    tf = import_tensorflow()
    loaded = load_checkpoint(checkpoint)
    fe = MfccFrontEnd.from_dict(ds.front_end)
    dct, mel = fe.dct_matrix().astype(np.float32), fe.mel_matrix().astype(np.float32)
    mean, std = np.float32(ds.mean[0]), np.float32(ds.std[0])

    clip = tf.keras.Input((fe.clip_samples,), name="clip")

    def mfcc(x):
        x = x / tf.maximum(tf.reduce_max(tf.abs(x), axis=1, keepdims=True), 1e-9)
        spec = tf.abs(tf.signal.stft(x, fe.window, fe.stride, fe.fft, window_fn=tf.signal.hann_window))
        feats = tf.matmul(tf.math.log(tf.matmul(spec, mel) + fe.log_offset), dct)
        return tf.expand_dims((feats - mean) / std, -1)
    feats = tf.keras.layers.Lambda(mfcc, name="mfcc")(clip)
    model = tf.keras.Model(clip, loaded.model(feats), name="kws_with_front_end")
    return tf, model


def convert(tf, model, path: Path, dynamic: bool) -> dict:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if dynamic:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    t = time.perf_counter()
    try:
        path.write_bytes(conv.convert())
    except Exception as e:  # a converter refusal is a finding, recorded
        return {"file": str(path), "converted": False, "error": str(e).splitlines()[0][:300]}
    return {"file": str(path), "converted": True, "size": path.stat().st_size, "convert_s": time.perf_counter() - t}


def p50(fn, x, runs=200) -> float:
    for i in range(10):
        fn(x[i % len(x)])
    lat = []
    for i in range(runs):
        t = time.perf_counter_ns()
        fn(x[i % len(x)])
        lat.append((time.perf_counter_ns() - t) / 1e6)
    return float(np.median(lat))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", default="synthetic-speech")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--features-files", nargs="*", default=[], help="features-in .tflite files to time beside it")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    from edgepack.runtimes.machine import cpu_label, machine_record
    from edgepack.runtimes import open_runner
    from edgepack.toolkit.data import load_dataset
    ds = load_dataset(a.data, a.data_dir)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tf, model = build(a.checkpoint, ds)
    clips = ds.clips_test.astype(np.float32) / 32768.0
    rows = []
    for name, dynamic in (("front end in graph, fp32", False), ("front end in graph, dynamic-range int8", True)):
        r = convert(tf, model, out / f"kws_in_graph{'.dr' if dynamic else ''}.tflite", dynamic)
        r["variant"] = name
        if r["converted"]:
            from ai_edge_litert.interpreter import Interpreter
            it = Interpreter(model_path=r["file"], num_threads=a.threads)
            it.allocate_tensors()
            i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
            ops = sorted({d["op_name"] for d in it._get_ops_details()})

            def run(c):
                it.set_tensor(i_in, c[None])
                it.invoke()
                return it.get_tensor(i_out)
            pred = np.array([run(c).argmax() for c in clips])
            r.update(accuracy=float((pred == ds.y_test).mean()), p50_ms=p50(run, clips), ops=ops)
        rows.append(r)
    for f in a.features_files:
        runner = open_runner(f, threads=a.threads)
        xn = ds.normalize(ds.x_test)
        pred = runner.predict(xn).argmax(1)
        model_ms = p50(lambda x: runner.run(runner.prepare(x[None])), xn)

        def both(c):
            runner.run(runner.prepare(ds.normalize(ds.features(c[None]))))
        rows.append({"variant": f"NumPy front end + {Path(f).name}", "file": f, "converted": True,
                     "size": Path(f).stat().st_size, "accuracy": float((pred == ds.y_test).mean()),
                     "p50_ms": p50(both, ds.clips_test), "model_p50_ms": model_ms})
        runner.close()
    info = machine_record()
    res = {"machine": info, "threads": a.threads, "data": ds.describe(), "rows": rows}
    (out / "front_end_in_graph.json").write_text(json.dumps(res, indent=2, default=str))
    print(f"{cpu_label()}, {a.threads} thread(s); {ds.describe()}")
    print("| variant | size B | accuracy | p50 ms per clip (front end + model) |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        if not r["converted"]:
            print(f"| {r['variant']} | did not convert: {r['error']} | | |")
        else:
            print(f"| {r['variant']} | {r['size']:,} | {r['accuracy']:.2%} | {r['p50_ms']:.3f} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    raise SystemExit(main())
