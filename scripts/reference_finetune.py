#!/usr/bin/env python3
"""Interchangeability of our fine-tuned checkpoints with Hugging Face transformers.

Loads a checkpoint that `isolab finetune` wrote with transformers'
AutoModelForSequenceClassification and AutoTokenizer (PyTorch, CPU, eval mode) and records its
logits on the first N dev examples of the task. tests/finetune.rs rebuilds the same checkpoints
(same command, seeded) and compares our logits with these (<= 1e-4).

The checkpoints of the test are one-step runs: the schedule's first step has learning rate 0, so
their weights are exactly the seeded initial model (minilm's encoder and pooler, the classifier
initialised as transformers does) on any machine. A run with real updates would not do: Adam's
first steps move every weight by about ±lr according to the sign of its gradient, so rounding
differences of 1e-7 flip weights by the learning rate. For trained checkpoints (the main job's),
use --ours with the logits `isolab evaluate --logits` wrote.

Writes one safetensors file per checkpoint with
  logits        (N x num_labels) float32, transformers' output
  input_ids     (N x longest) int64, the tokenizer's ids (0-padded), to check tokenization too
and metadata: task, n, weights_sha256 (of model.safetensors), problem_type, transformers version.

Rerun (needs torch, transformers, safetensors; not part of CI):
  for t in sst2 stsb mrpc; do
    cargo run --quiet --bin isolab -- finetune --task $t --out target/ref-$t --profile quick --steps 1 --eval-every 1 --trace-every 0
    .refvenv/bin/python scripts/reference_finetune.py --model target/ref-$t --task $t \
        --glue data/glue --out tests/data/finetune_reference_$t.safetensors
  done

With --ours FILE (logits our `isolab evaluate --logits FILE` wrote) it also prints the largest
absolute difference, for checkpoints too large to keep references of (the default runs).
"""
import argparse
import hashlib
import json

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

COLUMNS = {  # task: (folder, header, first sentence column, second sentence column)
    "sst2": ("SST-2", True, 0, None),
    "cola": ("CoLA", False, 3, None),
    "mrpc": ("MRPC", True, 3, 4),
    "rte": ("RTE", True, 1, 2),
    "stsb": ("STS-B", True, 7, 8),
}

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--task", required=True, choices=sorted(COLUMNS))
ap.add_argument("--glue", required=True)
ap.add_argument("--n", type=int, default=16)
ap.add_argument("--out")
ap.add_argument("--ours")
args = ap.parse_args()

folder, header, a, b = COLUMNS[args.task]
text = open(f"{args.glue}/{folder}/dev.tsv", encoding="utf-8-sig").read()
rows = [l.split("\t") for l in text.splitlines()[1 if header else 0:] if l]
rows = rows[: args.n]
first = [r[a].rstrip() for r in rows]
second = [r[b].rstrip() for r in rows] if b is not None else None

tok = AutoTokenizer.from_pretrained(args.model)
model = AutoModelForSequenceClassification.from_pretrained(args.model)
model.eval()
enc = tok(first, second, padding=True, truncation=True, max_length=128, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits.numpy().astype(np.float32)
sha = hashlib.sha256(open(f"{args.model}/model.safetensors", "rb").read()).hexdigest()
print(f"{args.model}: {args.task}, {len(rows)} examples, problem_type {model.config.problem_type}, logits {logits.shape}")
if args.out:
    save_file(
        {"logits": logits, "input_ids": enc["input_ids"].numpy().astype(np.int64)},
        args.out,
        metadata={
            "task": args.task,
            "n": str(len(rows)),
            "weights_sha256": sha,
            "problem_type": str(model.config.problem_type),
            "transformers": transformers.__version__,
        },
    )
    print(f"wrote {args.out}")
if args.ours:
    ours = load_file(args.ours)["logits"][: len(rows)]
    print(f"max |ours - transformers| = {np.abs(ours - logits).max():.3e}")
