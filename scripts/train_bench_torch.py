#!/usr/bin/env python3
"""The PyTorch side of scripts/train_bench.sh: trains SmolLM2 the way a PyTorch user would,
on the exact micro-batches `cuma train --dump-batches` listed, and prints its tokens/s.

Methods:
  lora  Hugging Face transformers + PEFT: LoRA on q_proj, v_proj (r, alpha, dropout as given).
  cuma  A mixture of LoRA experts written densely in PyTorch (every expert's low-rank
        activation computed, top-k gates scattered into an E-vector), with cuma's router:
        Linear(H + D -> 256), ReLU, Linear(256 -> E) over [token, profile vector], one router
        per adapted projection, and the load-balancing loss (lambda 0.01).

Losses:
  labels  `model(input_ids, labels=...)`: logits at every position, -100 outside the answer.
  answer  the lm-head applied to the answer positions only.

Prints one JSON line: {"tokens_per_s": ..., "step_seconds": [...], ...}. Tokens are the
unpadded token count of each batch, as cuma counts them.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", required=True, type=Path, help="cuma train --dump-batches output")
    p.add_argument("--profiles", required=True, type=Path, help="the run's profiles.safetensors")
    p.add_argument("--gguf", required=True, type=Path, help="the backbone GGUF file")
    p.add_argument("--method", choices=["lora", "cuma"], default="lora")
    p.add_argument("--loss", choices=["labels", "answer"], default="answer")
    p.add_argument("--steps", type=int, default=6, help="optimiser steps to run")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the figure")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--router-hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--bf16", action="store_true", help="torch.autocast(cpu, bfloat16) around the forward")
    return p.parse_args()


class Profile:
    """The batch's profile vectors, read by every mixture layer's router."""

    vectors = None
    mask = None  # [b, s] float, 1 for real tokens (the balance loss counts only those)


class MixtureLinear(nn.Module):
    """A frozen projection plus E LoRA experts gated by a demographic-aware router."""

    def __init__(self, base: nn.Linear, profile_dim, experts, top_k, rank, alpha, dropout, router_hidden):
        super().__init__()
        self.base = base
        self.experts, self.top_k, self.rank = experts, top_k, rank
        self.scale = alpha / rank
        self.drop = nn.Dropout(dropout)
        self.a = nn.Parameter(torch.randn(experts * rank, base.in_features) * 0.01)
        self.b = nn.Parameter(torch.zeros(base.out_features, experts * rank))
        self.router_token = nn.Linear(base.in_features, router_hidden, bias=False)
        self.router_profile = nn.Linear(profile_dim, router_hidden)
        self.router_out = nn.Linear(router_hidden, experts)
        self.balance = None

    def forward(self, x):
        d = Profile.vectors
        h = self.router_token(self.drop(x)) + self.router_profile(self.drop(d))[:, None, :]
        logits = self.router_out(self.drop(F.relu(h)))
        top, idx = logits.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(logits).scatter(-1, idx, top.softmax(-1))
        # Balance loss over the real tokens: E * sum_e freq_e * prop_e.
        mask = Profile.mask[..., None]
        n = mask.sum()
        selected = torch.zeros_like(logits).scatter(-1, idx, 1.0).detach()
        freq = (selected * mask).sum((0, 1)) / (n * self.top_k)
        prop = (gates * mask).sum((0, 1)) / n
        self.balance = self.experts * (freq * prop).sum()
        z = self.drop(x) @ self.a.t()
        z = z * gates.repeat_interleave(self.rank, dim=-1)
        return self.base(x) + self.scale * (z @ self.b.t())


def load_model(args):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(args.gguf.parent), gguf_file=args.gguf.name, dtype=torch.float32
    )
    for p in model.parameters():
        p.requires_grad_(False)
    mixtures = []
    if args.method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=["q_proj", "v_proj"]
        )
        model = get_peft_model(model, config)
    else:
        from safetensors.torch import load_file

        dim = load_file(str(args.profiles))["vectors"].shape[1]
        for layer in model.model.layers:
            attn = layer.self_attn
            for name in ("q_proj", "v_proj"):
                m = MixtureLinear(
                    getattr(attn, name), dim, args.experts, args.top_k, args.rank, args.alpha, args.dropout,
                    args.router_hidden,
                )
                setattr(attn, name, m)
                mixtures.append(m)
    model.train()
    return model, mixtures


def batch_tensors(rows):
    longest = max(len(r["ids"]) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    labels = torch.full((len(rows), longest), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["ids"])
        ids[i, :n] = torch.tensor(r["ids"])
        mask[i, :n] = 1
        labels[i, r["targets_from"] : n] = ids[i, r["targets_from"] : n]
    return ids, mask, labels


def task_loss(model, args, ids, mask, labels):
    if args.loss == "labels":
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(input_ids=ids, attention_mask=mask).last_hidden_state
    # The hidden state before each target token predicts it.
    rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)
    logits = base.lm_head(hidden[rows, cols])
    return F.cross_entropy(logits, labels[rows, cols + 1])


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from safetensors.torch import load_file

    profiles = load_file(str(args.profiles))["vectors"].float()
    lines = [json.loads(l) for l in args.batches.read_text().splitlines() if l.strip()]
    steps = {}
    for line in lines:
        steps.setdefault(line["step"], []).append(line["rows"])
    order = sorted(steps)[: args.steps]
    if len(order) < args.steps:
        sys.exit(f"{args.batches}: {len(order)} steps listed, {args.steps} asked for")
    model, mixtures = load_model(args)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    seconds, tokens, losses = [], [], []
    for step in order:
        started = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        micro = steps[step]
        step_loss, step_tokens = 0.0, 0
        for rows in micro:
            ids, mask, labels = batch_tensors(rows)
            Profile.vectors = profiles[[r["profile"] for r in rows]]
            Profile.mask = mask.float()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = task_loss(model, args, ids, mask, labels)
                if mixtures:
                    loss = loss + 0.01 * sum(m.balance for m in mixtures)
            (loss / len(micro)).backward()
            step_loss += loss.item() / len(micro)
            step_tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        seconds.append(time.perf_counter() - started)
        tokens.append(step_tokens)
        losses.append(step_loss)
        print(f"step {step}: loss {step_loss:.4f}, {step_tokens / seconds[-1]:.0f} tok/s", file=sys.stderr)
    timed = slice(args.warmup, None)
    rate = sum(tokens[timed]) / sum(seconds[timed])
    print(
        json.dumps(
            {
                "trainer": f"pytorch-{args.method}-{args.loss}" + ("-bf16" if args.bf16 else ""),
                "tokens_per_s": rate,
                "step_seconds": seconds,
                "step_tokens": tokens,
                "losses": losses,
                "trainable": sum(p.numel() for p in trainable),
                "threads": torch.get_num_threads(),
                "versions": {
                    "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__,
                    "peft": __import__("peft").__version__ if args.method == "lora" else None,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
