#!/usr/bin/env python3
"""The tables of scripts/dpo_experiment.sh: for each data set and run, the choice metrics on the
held-out respondents (eval.json), how the run ranks held-out pairs (pairs.json) and the last DPO
step's training figures (metrics.jsonl). Runs that have not finished are listed as missing."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
RUNS = ["cuma-sft", "cuma-dpo", "cuma-dpo-refbase", "cuma-dpo-nobalance", "lora-sft", "lora-dpo"]


def load(p):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def last_step(run):
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def summary(e):
    return e.get("summary", e) if e else None


for name in ["wvs", "popquorn"]:
    d = out / name
    if not d.is_dir():
        continue
    pairs = sum(1 for _ in open(d / "test_pairs.jsonl")) if (d / "test_pairs.jsonl").is_file() else 0
    print(f"### {name}: held-out {'respondents' if name == 'wvs' else 'annotators'} ({pairs} test pairs)\n")
    print("| run | accuracy | macro-F1 | emd_prob | chosen more likely | log-prob margin | reward acc. | reward margin | reference | last DPO step: loss / margin / acc. |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in RUNS:
        r = d / run
        e, p, m = summary(load(r / "eval.json")), load(r / "pairs.json"), last_step(r)
        if e is None and p is None:
            print(f"| {run} | (not run) |||||||||")
            continue
        cells = [run]
        cells += [f"{e['accuracy']:.3f}", f"{e['macro_f1']:.3f}", f"{e['emd_prob']:.4f}"] if e else ["-"] * 3
        if p:
            cells += [f"{100 * p['logp_accuracy']:.1f} %", f"{p['logp_margin']:.3f}",
                      f"{100 * p['rewards']['accuracy']:.1f} %", f"{p['rewards']['margin']:.4f}", p["reference"]]
        else:
            cells += ["-"] * 5
        if m and "margin" in m:
            cells.append(f"{m['loss']:.4f} / {m['margin']:.4f} / {m['accuracy']:.2f}")
        else:
            cells.append("-")
        print("| " + " | ".join(cells) + " |")
    print()

def steps(run):
    try:
        return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    except (OSError, ValueError):
        return []


grpo_runs = [r for r in ["cuma-grpo", "cuma-grpo-noreplay", "cuma-grpo-group"] if (out / "wvs" / r).is_dir()]
if grpo_runs:
    print("### wvs: GRPO from cuma-sft (choice reward)\n")
    print("| run | accuracy | macro-F1 | emd_prob | emd_country | reward, first 3 steps -> last 3 | KL (last) | clip fraction (mean) | routing disagreement (mean) | completion tokens |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = summary(load(out / "wvs" / "cuma-sft" / "eval.json"))
    if base:
        print(f"| cuma-sft (before) | {base['accuracy']:.3f} | {base['macro_f1']:.3f} | {base['emd_prob']:.4f} | {base['emd_country']:.4f} | | | | | |")
    for run in grpo_runs:
        r = out / "wvs" / run
        e, m = summary(load(r / "eval.json")), steps(r)
        cells = [run]
        cells += [f"{e['accuracy']:.3f}", f"{e['macro_f1']:.3f}", f"{e['emd_prob']:.4f}", f"{e['emd_country']:.4f}"] if e else ["-"] * 4
        if m:
            rw = [x["reward_mean"] for x in m]
            avg = lambda xs: sum(xs) / max(len(xs), 1)
            cells += [f"{avg(rw[:3]):.3f} -> {avg(rw[-3:]):.3f}", f"{m[-1]['kl']:.4f}",
                      f"{avg([x['clip_fraction'] for x in m]):.4f}", f"{avg([x['routing_disagreement'] for x in m]):.5f}",
                      f"{avg([x['completion_tokens'] for x in m]):.2f}"]
        else:
            cells += ["-"] * 5
        print("| " + " | ".join(cells) + " |")
    print()
    for run in grpo_runs:
        m = steps(out / "wvs" / run)
        if m:
            print(f"- {run} reward per step: " + ", ".join(f"{x['reward_mean']:.2f}" for x in m))
    print()

log = out / "timings.tsv"
if log.is_file():
    print("### Wall time (seconds)\n\n| step | seconds |\n|---|---|")
    for line in log.read_text().splitlines()[1:]:
        step, secs = line.split("\t")
        print(f"| {step} | {secs} |")
