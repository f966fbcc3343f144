"""Load client for the serving benchmark (scripts/serve_bench.sh): streams chat completions from an
OpenAI-compatible server at a given concurrency and reports aggregate generated tokens/s, time to
first token and inter-token latency.

    serve_bench.py chat URL CONCURRENCY REQUESTS MAX_TOKENS LABEL [--profiles]
    serve_bench.py sequential CUMA_RUN BUNDLE REQUESTS MAX_TOKENS LABEL [--profiles]
    serve_bench.py table RESULTS.jsonl

`chat` appends one JSON line to stdout. Greedy (temperature 0); prompts and, with --profiles,
profiles cycle through fixed lists so every server gets the same requests. Tokens are counted
from the final usage chunk; inter-token latency is the gap between content chunks (one chunk per
token or fewer: a server that holds text back to check stop sequences merges tokens).
"""
import json
import statistics
import sys
import threading
import time
import urllib.request

PROMPTS = [
    "What matters most in life?",
    "Describe a good neighbour in two sentences.",
    "Should children learn obedience or independence at home? Explain briefly.",
    "How important is religion to people where you live?",
    "Give one piece of advice to someone starting their first job.",
    "What makes a government legitimate?",
    "Describe a typical family dinner.",
    "Is it ever justified to cheat on taxes?",
]
PROFILES = [
    {"country": "Thailand", "age": "55-64", "gender": "Female", "religion": "Buddhist"},
    {"country": "Germany", "age": "25-34", "gender": "Male", "religion": "No religion"},
    {"country": "Nigeria", "age": "35-44", "gender": "Female", "religion": "Christian"},
    {"country": "Japan", "age": "65+", "gender": "Male", "religion": "No religion"},
]


def one_request(url, k, max_tokens, profiles):
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": PROMPTS[k % len(PROMPTS)]}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if profiles:
        body["profile"] = PROFILES[k % len(PROFILES)]
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    stamps, tokens = [], None
    with urllib.request.urlopen(req, timeout=600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    stamps.append(time.perf_counter())
    ttft = (stamps[0] - start) if stamps else None
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"ttft": ttft, "gaps": gaps, "tokens": tokens if tokens is not None else len(stamps)}


def chat(url, concurrency, requests, max_tokens, label, profiles):
    results = [None] * requests
    next_k = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                k = next_k[0]
                next_k[0] += 1
            if k >= requests:
                return
            try:
                results[k] = one_request(url, k, max_tokens, profiles)
            except OSError as e:
                results[k] = {"error": str(e)}

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        sys.exit(f"{label}: {len(failed)} of {requests} requests failed, first: {failed[0]}")
    ttfts = [r["ttft"] for r in results if r["ttft"] is not None]
    gaps = [g for r in results for g in r["gaps"]]
    tokens = sum(r["tokens"] for r in results)
    q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] if len(xs) >= 2 else (xs[0] if xs else float("nan"))
    print(json.dumps({
        "label": label, "concurrency": concurrency, "requests": requests, "tokens": tokens,
        "seconds": wall, "tokens_per_s": tokens / wall,
        "ttft_p50": q(ttfts, 50), "ttft_p99": q(ttfts, 99),
        "itl_p50": q(gaps, 50), "itl_p99": q(gaps, 99),
    }))


def sequential(cuma_run, bundle, requests, max_tokens, label, profiles):
    """The same requests served one by one by `cuma-run --jsonl` (ONNX Runtime, 2 threads); a
    warm-up line first, and the clock runs from its answer to the last one."""
    import subprocess

    lines = []
    for k in range(requests + 1):
        line = {"prompt": PROMPTS[k % len(PROMPTS)], "max_tokens": max_tokens}
        if profiles:
            line["profile"] = PROFILES[k % len(PROFILES)]
        lines.append(json.dumps(line))
    proc = subprocess.Popen(
        [cuma_run, "--bundle", bundle, "--backend", "ort", "--threads", "2", "--jsonl"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.close()
    stamps, tokens = [], 0
    for k, out in enumerate(proc.stdout):
        stamps.append(time.perf_counter())
        result = json.loads(out)
        if "error" in result:
            sys.exit(f"cuma-run: {result['error']}")
        if k > 0:
            tokens += len(result["token_ids"])
    proc.wait()
    wall = stamps[-1] - stamps[0]
    per = [b - a for a, b in zip(stamps, stamps[1:])]
    print(json.dumps({
        "label": label, "concurrency": 1, "requests": requests, "tokens": tokens, "seconds": wall,
        "tokens_per_s": tokens / wall, "ttft_p50": None, "ttft_p99": None,
        "itl_p50": float("nan"), "itl_p99": float("nan"), "request_p50": statistics.median(per),
    }))


def table(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    print("| server | concurrency | requests | tokens | tok/s | tok/s per core | TTFT p50 / p99 (s) | ITL p50 / p99 (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    cores = int(rows[0].get("cores", 2)) if rows else 2
    for r in rows:
        itl = (f"{r['itl_p50'] * 1e3:.1f} / {r['itl_p99'] * 1e3:.1f}") if r.get("itl_p50") == r.get("itl_p50") else "-"
        ttft = f"{r['ttft_p50']:.2f} / {r['ttft_p99']:.2f}" if r.get("ttft_p50") is not None else "-"
        print(f"| {r['label']} | {r['concurrency']} | {r['requests']} | {r['tokens']} | {r['tokens_per_s']:.1f} | "
              f"{r['tokens_per_s'] / cores:.1f} | {ttft} | {itl} |")


if __name__ == "__main__":
    if sys.argv[1] == "chat":
        url, c, n, m, label = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        chat(url, c, n, m, label, "--profiles" in sys.argv[7:])
    elif sys.argv[1] == "sequential":
        cuma_run, bundle, n, m, label = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        sequential(cuma_run, bundle, n, m, label, "--profiles" in sys.argv[7:])
    elif sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)
