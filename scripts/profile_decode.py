"""Where a decode step's time goes in ONNX Runtime: one bundle's `model.onnx` decoded at batch B
after a C-token prompt, with onnxruntime's profiler on, the node times summed per operator type
(and, with --nodes, the slowest nodes). Used to find the routers' share of a CuMA step
(docs/perf.md).

    python scripts/profile_decode.py BUNDLE_DIR [--batch 1] [--context 128] [--steps 30]
        [--threads 2] [--nodes 15]
"""

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=0, help="also list the N slowest nodes")
    a = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "decode")
    sess = ort.InferenceSession(os.path.join(a.bundle, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    layers = sum(1 for n in inputs if n.startswith("past.") and n.endswith(".key"))
    kv, hd = inputs["past.0.key"].shape[1], inputs["past.0.key"].shape[3]
    rng = np.random.default_rng(0)
    terms = None
    if "profile_terms" in inputs:
        terms_graph = ort.InferenceSession(os.path.join(a.bundle, "profile_terms.onnx"), providers=["CPUExecutionProvider"])
        d = terms_graph.get_inputs()[0].shape[1]
        vector = rng.standard_normal((a.batch, d)).astype(np.float32)
        (terms,) = terms_graph.run(None, {"demographic": vector})

    def feed(ids, total, past):
        f = {"input_ids": ids, "attention_mask": np.ones((a.batch, total), np.int64)}
        if "demographic" in inputs:
            f["demographic"] = rng.standard_normal((a.batch, inputs["demographic"].shape[1])).astype(np.float32)
        if "profile_terms" in inputs:  # what the bundle's profile_terms.onnx gives, once per profile
            f["profile_terms"] = terms
        for l in range(layers):
            for kind in ("key", "value"):
                f[f"past.{l}.{kind}"] = past[(l, kind)] if past else np.zeros((a.batch, kv, 0, hd), np.float32)
        return f

    names = [o.name for o in sess.get_outputs()]
    prompt = (1000 + (np.arange(a.context * a.batch) * 7919) % 20000).astype(np.int64).reshape(a.batch, a.context)
    out = dict(zip(names, sess.run(None, feed(prompt, a.context, None))))
    past = {(l, kind): out[f"present.{l}.{kind}"] for l in range(layers) for kind in ("key", "value")}
    step = feed(np.full((a.batch, 1), 42, np.int64), a.context + 1, past)
    for _ in range(a.steps):
        sess.run(None, step)
    trace = json.load(open(sess.end_profiling()))

    runs = [e for e in trace if e.get("cat") == "Session" and e["name"] == "model_run"]
    decode = sorted(runs, key=lambda e: e["ts"])[1:]  # the first run is the prompt
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in decode]
    step_us = sorted(e["dur"] for e in decode)
    by_op = collections.defaultdict(lambda: [0, 0])
    by_node = collections.defaultdict(int)
    for e in trace:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if not any(lo <= e["ts"] <= hi for lo, hi in windows):
            continue
        op = e["args"].get("op_name", "?")
        by_op[op][0] += e["dur"]
        by_op[op][1] += 1
        by_node[(e["name"][: -len("_kernel_time")], op)] += e["dur"]
    total_steps = len(decode)
    median = step_us[len(step_us) // 2]
    node_sum = sum(v[0] for v in by_op.values()) / total_steps
    print(f"{a.bundle}: batch {a.batch}, context {a.context}, {a.threads} threads")
    print(f"decode step: median {median / 1e3:.2f} ms over {total_steps} steps; kernel time {node_sum / 1e3:.2f} ms per step")
    print("| op | ms per step | share | nodes per step |\n|---|---|---|---|")
    for op, (us, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        print(f"| {op} | {us / total_steps / 1e3:.3f} | {100 * us / total_steps / node_sum:.1f} % | {n / total_steps:.0f} |")
    if a.nodes:
        print("\nslowest nodes (ms per step):")
        for (node, op), us in sorted(by_node.items(), key=lambda kv: -kv[1])[: a.nodes]:
            print(f"  {us / total_steps / 1e3:.3f}  {op:<18} {node}")


if __name__ == "__main__":
    main()
