"""llama.cpp against cuma's float bundle on the same prompts (issue 19 item 2): reads the JSONL
that `cargo run --example agreement -- ... --dump FILE` writes (each item's prompt token ids,
option-letter ids and the float bundle's readings), runs the prompts through llama-cpp-python on
the GGUF the bundle came from, and prints the same three figures the agreement example prints:
next-token top-1 agreement at the answer position and the mean and largest total variation
between the option distributions (softmax over the option letters' logits).

    python scripts/llama_agreement.py DUMP.jsonl [--gguf PATH] [--threads 2]
"""

import argparse
import json

import numpy as np

from quant_bench import default_gguf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--gguf")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from llama_cpp import Llama
    rows = [json.loads(line) for line in open(a.dump) if line.strip()]
    longest = max(len(r["ids"]) for r in rows)
    # logits_all: llama-cpp-python 0.3.36 fills `scores` only then.
    llm = Llama(model_path=a.gguf or default_gguf(), n_ctx=max(512, longest + 1), n_batch=512,
                n_threads=a.threads, n_threads_batch=a.threads, logits_all=True, verbose=False)
    top1, tvs = 0, []
    for r in rows:
        llm.reset()
        llm.eval(r["ids"])
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        top1 += int(int(np.argmax(logits)) == r["top1"])
        picked = logits[r["letters"]]
        p = np.exp(picked - picked.max())
        p /= p.sum()
        tvs.append(0.5 * float(np.abs(p - np.asarray(r["options"])).sum()))
    n = len(rows)
    print(f"{n} items, llama.cpp against the float bundle: next-token top-1 agreement {top1 / n:.4f}, "
          f"answer TV mean {np.mean(tvs):.4f} (max {max(tvs):.4f})")
    print(json.dumps({"items": n, "top1": top1 / n, "tv_mean": float(np.mean(tvs)), "tv_max": max(tvs)}))


if __name__ == "__main__":
    main()
