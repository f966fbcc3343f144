"""Runner overhead (issue 19 item 3): cuma-runtime against Python onnxruntime decoding the same
`model.onnx`, alternated round by round. cuma-run answers a chat prompt greedily and prints its
per-token decode time (`--timings`); the Python side runs the greedy loop a Python user writes
with onnxruntime (feed the presents back as the next step's past, argmax the last logits) for as
many tokens, from a 128-token context (cuma-run's prompt with its chat template is of similar
length; a step's cost barely depends on it at this size). Prints each round and the median ratio with its spread.

    python scripts/runner_overhead.py BUNDLE_DIR [--cuma-run target/debug/cuma-run]
        [--rounds 5] [--tokens 32] [--threads 2]
"""

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

from quant_bench import cuma_run

PROMPT = (
    "Describe, in a long and careful answer, how the seasons change over a year in a temperate "
    "country, what people do in each of them, which foods they eat, how they travel, what the "
    "weather is like in the mornings and evenings, and how the length of the day changes. "
    "Please cover spring, summer, autumn and winter in that order."
)


def python_ort(sess, context, tokens):
    """Seconds per greedy decode step after a `context`-token prompt, in Python onnxruntime."""
    inputs = {i.name: i for i in sess.get_inputs()}
    layers = sum(1 for n in inputs if n.startswith("past.") and n.endswith(".key"))
    kv, hd = inputs["past.0.key"].shape[1], inputs["past.0.key"].shape[3]
    names = [o.name for o in sess.get_outputs()]
    ids = (1000 + (np.arange(context) * 7919) % 20000).astype(np.int64)[None, :]
    past = {(l, k): np.zeros((1, kv, 0, hd), np.float32) for l in range(layers) for k in ("key", "value")}
    total, start = 0, None
    for step in range(tokens + 1):
        total += ids.shape[1]
        feed = {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64)}
        feed.update({f"past.{l}.{k}": past[(l, k)] for (l, k) in past})
        out = dict(zip(names, sess.run(None, feed)))
        past = {(l, k): out[f"present.{l}.{k}"] for (l, k) in past}
        ids = np.array([[int(np.argmax(out["logits"][0, -1]))]], np.int64)
        if step == 0:
            start = time.perf_counter()  # decode steps only, as cuma-run reports them
    return (time.perf_counter() - start) / tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--cuma-run", default="target/debug/cuma-run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(f"{a.bundle}/model.onnx", opts, providers=["CPUExecutionProvider"])
    ratios = []
    for r in range(a.rounds):
        _, _, ours, decoded, _ = cuma_run(a.cuma_run, a.bundle, a.tokens, a.threads, prompt=PROMPT)
        theirs = python_ort(sess, 128, decoded)
        ratios.append(ours / theirs)
        print(f"round {r + 1}: cuma-runtime {ours * 1e3:.2f} ms/token, Python onnxruntime {theirs * 1e3:.2f} "
              f"ms/token over {decoded} tokens: {ours / theirs:.3f}x")
    print(f"cuma-runtime / Python onnxruntime per decode step: median {statistics.median(ratios):.3f}x "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {a.rounds} rounds)")


if __name__ == "__main__":
    main()
