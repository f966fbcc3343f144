"""Prints the serving table from criterion's results (benches/runtime.rs), and times Python
onnxruntime decoding the same way (one step at batch 1 after a 128-token context) on the plain
bundle's graph and, when given, on optimum's export of the same model (scripts/optimum_export.py),
for the README's comparison.

    python scripts/bench_table.py target/criterion runs/bench/plain/model.onnx [threads [optimum.onnx]]
"""
import json
import pathlib
import sys
import time


def criterion_means(root):
    """full benchmark id -> mean seconds."""
    means = {}
    for bench in pathlib.Path(root).rglob("new/benchmark.json"):
        full_id = json.loads(bench.read_text())["full_id"]
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        means[full_id] = estimates["mean"]["point_estimate"] / 1e9
    return means


def python_ort_decode(model, threads, context=128, reps=20):
    """Seconds per decode step at batch 1 after a `context`-token prompt, in Python onnxruntime.
    Reads cuma's input names (`past.{l}.key`) and optimum's (`past_key_values.{l}.key`, plus
    `position_ids` where the graph asks for them)."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    past_in = "past.{}.{}" if "past.0.key" in inputs else "past_key_values.{}.{}"
    present_out = "present.{}.{}"
    layers = sum(1 for n in inputs if n.startswith(past_in.split("{")[0]) and n.endswith(".key"))
    kv, hd = inputs[past_in.format(0, "key")].shape[1], inputs[past_in.format(0, "key")].shape[3]

    def feed(ids, total, past):
        f = {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64)}
        if "position_ids" in inputs:
            f["position_ids"] = np.arange(total - ids.shape[1], total, dtype=np.int64)[None, :]
        for l in range(layers):
            for kind in ("key", "value"):
                f[past_in.format(l, kind)] = past[(l, kind)] if past else np.zeros((1, kv, 0, hd), np.float32)
        return f

    names = [o.name for o in sess.get_outputs()]
    prompt = (1000 + (np.arange(context) * 7919) % 20000).astype(np.int64)[None, :]
    out = dict(zip(names, sess.run(None, feed(prompt, context, None))))
    past = {(l, kind): out[present_out.format(l, kind)] for l in range(layers) for kind in ("key", "value")}
    step = feed(np.array([[42]], np.int64), context + 1, past)
    sess.run(None, step)
    start = time.perf_counter()
    for _ in range(reps):
        sess.run(None, step)
    return (time.perf_counter() - start) / reps


def main():
    root, model = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    optimum = sys.argv[4] if len(sys.argv) > 4 else None
    m = criterion_means(root)
    ms = lambda s: f"{1e3 * s:.1f} ms" if s else "-"
    tps = lambda s, b: f"{b / s:.1f}" if s else "-"
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
    print("| backend | encoder (1 profile) | prefill 128, plain | prefill 128, CuMA | CuMA/plain | decode b1 tok/s, plain | CuMA | CuMA/plain time | decode b8 tok/s, plain | CuMA | CuMA/plain time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for backend in ["tch", "ort", "tract"]:
        get = lambda model_, what: m.get(f"serve/{model_}/{backend}/{what}")
        enc = m.get(f"encoder/cuma/{backend}")
        pp, pc = get("plain", "prefill128"), get("cuma", "prefill128")
        d1p, d1c = get("plain", "decode/1"), get("cuma", "decode/1")
        d8p, d8c = get("plain", "decode/8"), get("cuma", "decode/8")
        print(f"| {backend} | {ms(enc)} | {ms(pp)} | {ms(pc)} | {ratio(pc, pp)} | {tps(d1p, 1)} | {tps(d1c, 1)} | {ratio(d1c, d1p)} | {tps(d8p, 8)} | {tps(d8c, 8)} | {ratio(d8c, d8p)} |")
    rust = m.get("serve/plain/ort/decode/1")
    print()
    print("Decode at batch 1 after a 128-token context, plain SmolLM2 on ONNX Runtime (CPU):")
    print()
    print("| graph | runner | tokens/s | time vs cuma-runtime |")
    print("|---|---|---|---|")
    print(f"| cuma `model.onnx` | cuma-runtime (Rust, criterion above) | {tps(rust, 1)} | 1.00x |")
    graphs = [("cuma `model.onnx`", model)] + ([("optimum export", optimum)] if optimum else [])
    for label, path in graphs:
        py = python_ort_decode(path, threads)
        print(f"| {label} | Python onnxruntime | {1 / py:.1f} | {ratio(py, rust)} |")


if __name__ == "__main__":
    main()
