#!/usr/bin/env python3
"""The floor under a LoRA training step of SmolLM2 on this CPU (issue 19 item 4): how long the
matrix products that no trainer of a frozen backbone can skip take on their own, on the same
micro-batches `cuma train --dump-batches` wrote for scripts/train_bench.sh.

A step with adapters on q,v of every layer needs, per layer, the forward product of each of the
seven projections (q, k, v, o, gate, up, down) and, for the backward, the product of each output
gradient with the frozen weight (the input gradient; no weight gradients), plus attention forward
and backward, plus the lm-head at the answer positions and its input gradient. This script times
exactly those products with PyTorch's kernels (MKL / oneDNN), f32, with random values of the
real shapes (one weight set per layer, so no layer finds another's weights in cache), and
nothing else: no norms, activations, residuals, adapters or optimiser (layer 0's q, k, v input
gradients, which nothing needs, are counted: 3 of 420 products). Real tokens over that
time is an upper bound for any trainer's tokens/s here: the most a LoRA trainer could beat
another one by is the other's step time over this one.

    .venv/bin/python scripts/train_floor.py BATCHES.jsonl [--threads 2] [--warmup 1]

Prints one JSON line: {"floor_tokens_per_s": ..., "step_seconds": [...], "real_tokens": [...]}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, LAYERS, VOCAB = 576, 1536, 9, 3, 64, 30, 49152
# (out, in) of q, k, v, o, gate, up, down.
PROJECTIONS = [
    (HIDDEN, HIDDEN),
    (KV_HEADS * HEAD_DIM, HIDDEN),
    (KV_HEADS * HEAD_DIM, HIDDEN),
    (HIDDEN, HIDDEN),
    (INTER, HIDDEN),
    (INTER, HIDDEN),
    (HIDDEN, INTER),
]


def step_seconds(batch, weights, lm_head):
    rows = batch["rows"]
    b, length = len(rows), max(len(r["ids"]) for r in rows)
    n = b * length
    answers = sum(len(r["ids"]) - r["targets_from"] for r in rows)
    acts = {i: torch.randn(n, i) for i in {HIDDEN, INTER}}
    grads = {o: torch.randn(n, o) for o in {HIDDEN, INTER, KV_HEADS * HEAD_DIM}}
    q = torch.randn(b, HEADS, length, HEAD_DIM, requires_grad=True)
    k = torch.randn(b, KV_HEADS, length, HEAD_DIM, requires_grad=True)
    v = torch.randn(b, KV_HEADS, length, HEAD_DIM, requires_grad=True)
    attn_grad = torch.randn(b, HEADS, length, HEAD_DIM)
    h, dlogits = torch.randn(answers, HIDDEN), torch.randn(answers, VOCAB)
    start = time.perf_counter()
    for layer in weights:
        for (out, inp), w in zip(PROJECTIONS, layer):
            torch.mm(acts[inp], w.t())  # forward
            torch.mm(grads[out], w)  # input gradient
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        o.backward(attn_grad)
    torch.mm(h, lm_head.t())
    torch.mm(dlogits, lm_head)
    return time.perf_counter() - start, sum(len(r["ids"]) for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("batches")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="leading steps left out of the rate")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.batches) as f:
        batches = [json.loads(line) for line in f if line.strip()]
    if len(batches) <= a.warmup:
        raise SystemExit(f"{a.batches}: {len(batches)} micro-batches, need more than --warmup {a.warmup}")
    weights = [[torch.randn(o, i) * 0.02 for o, i in PROJECTIONS] for _ in range(LAYERS)]
    lm_head = torch.randn(VOCAB, HIDDEN) * 0.02
    seconds, tokens = [], []
    for batch in batches:
        s, t = step_seconds(batch, weights, lm_head)
        seconds.append(s)
        tokens.append(t)
    timed = slice(a.warmup, None)
    rate = sum(tokens[timed]) / sum(seconds[timed])
    print(json.dumps({"floor_tokens_per_s": round(rate, 1), "step_seconds": seconds, "real_tokens": tokens}))


if __name__ == "__main__":
    main()
