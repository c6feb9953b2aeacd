#!/usr/bin/env python3
"""PyTorch baseline for benches/extract_sst2.rs: the same work with Hugging Face transformers.

Every hidden state of a model (all-MiniLM-L6-v2 by default, --model) for SST-2 dev (872 sentences), batch 32, length-sorted,
copied to host numpy arrays (real tokens only). Prints real tokens per second (best of three).

Needs torch, transformers, numpy (not part of CI):
  .refvenv/bin/python scripts/bench_extract_torch.py --model data/models/minilm --glue data/glue
"""
import argparse
import time

import torch
from transformers import AutoModel, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="data/models/minilm")
    ap.add_argument("--glue", default="data/glue")
    args = ap.parse_args()
    with open(f"{args.glue}/SST-2/dev.tsv", encoding="utf-8") as f:
        sentences = [line.split("\t")[0].rstrip() for line in f.read().splitlines()[1:]]
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).eval()
    enc = [tok(s, truncation=True, max_length=128)["input_ids"] for s in sentences]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    best, tokens, states = float("inf"), 0, 0
    for _ in range(3):
        start = time.perf_counter()
        tokens = 0
        with torch.no_grad():
            for b in range(0, len(order), 32):
                batch = [enc[i] for i in order[b:b + 32]]
                padded = tok.pad({"input_ids": batch}, return_tensors="pt")
                out = model(**padded, output_hidden_states=True)
                mask = padded["attention_mask"].bool()
                states = len(out.hidden_states)
                for h in out.hidden_states:
                    h[mask].numpy()
                tokens += int(mask.sum())
        best = min(best, time.perf_counter() - start)
    print(f"PyTorch {torch.__version__} extract SST-2 dev: {tokens} tokens, {states} hidden states, "
          f"best of 3 {best:.2f} s = {tokens / best:.0f} tokens/s (threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
