#!/usr/bin/env python3
"""Prints scripts/train_bench.sh's table from its results folder: tokens/s per trainer (mean and
range over the rounds) and the ratios the speed targets are stated in."""
import json
import sys
from collections import defaultdict
from pathlib import Path

results = defaultdict(list)
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    results[r["trainer"]].append(r["tokens_per_s"])


def mean(xs):
    return sum(xs) / len(xs)


print("| trainer | tokens/s (mean) | range over rounds | rounds |")
print("|---|---:|---:|---:|")
for name, rates in results.items():
    print(f"| {name} | {mean(rates):.1f} | {min(rates):.1f} - {max(rates):.1f} | {len(rates)} |")


def best(prefix, suffix=""):
    """The fastest trainer named `prefix...suffix`; without a suffix, the default loops only (no
    bf16, no heap policy)."""
    found = {n: mean(r) for n, r in results.items() if n.startswith(prefix) and n.endswith(suffix)
             and (suffix or not n.endswith(("-bf16", "-heap")))}
    return max(found.items(), key=lambda kv: kv[1]) if found else None


# (label, suffix of cuma's rows, suffix of PyTorch's rows): cuma sets its heap policy itself, so
# its default rows meet PyTorch's "-heap" rows in the second section.
sections = (("f32", "", ""), ("f32, PyTorch under cuma's heap policy", "", "-heap"), ("bf16", "-bf16", "-bf16"))
for label, suffix, torch_suffix in sections:
    lora, torch_lora = best("cuma-lora", suffix), best("pytorch-lora-", torch_suffix)
    mixture, torch_mixture = best("cuma-cuma", suffix), best("pytorch-cuma-", torch_suffix)
    if not (lora or mixture) or (torch_suffix and not (torch_lora or torch_mixture)):
        continue
    print(f"\n{label}:")
    if lora and torch_lora:
        print(f"  cuma LoRA / better PyTorch + PEFT loop ({torch_lora[0]}): {lora[1] / torch_lora[1]:.2f}x (target >= 1.5x)")
    if mixture and lora and torch_suffix != "-heap":
        print(f"  cuma CuMA / cuma LoRA: {mixture[1] / lora[1]:.2f}x (target >= 0.9x)")
    if mixture and torch_mixture:
        print(f"  cuma CuMA / better dense PyTorch mixture ({torch_mixture[0]}): {mixture[1] / torch_mixture[1]:.2f}x")
    floor = best("floor-frozen-products", suffix)
    if floor and torch_lora:
        # scripts/train_floor.py: the unavoidable products alone, an upper bound for any trainer.
        print(f"  floor (frozen products alone) / {torch_lora[0]}: {floor[1] / torch_lora[1]:.2f}x"
              " (the most any LoRA trainer could beat that loop by here)")
    if floor and lora and torch_suffix != "-heap":
        print(f"  cuma LoRA / floor: {lora[1] / floor[1]:.2f}x")
