"""PyTorch baseline for benches/finetune_step.rs: seconds per training step of
a model (--model: all-MiniLM-L6-v2's folder, or the BERT-base stand-in's) + a classification head (transformers' AutoModelForSequenceClassification),
AdamW (weight decay 0.01, none on biases and LayerNorm), gradient clipping at 1.0, dropout on,
on the same batches: SST-2 dev in file order, 32 sentences per batch, padded to the batch's
longest. Two warm-up steps, then the median of ten.

Run: .refvenv/bin/python scripts/bench_finetune_torch.py --model data/models/minilm --glue data/glue
(torch and transformers from PyPI; 2 threads as on the project's machine).
"""
import argparse
import statistics
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--glue", required=True)
args = ap.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)
lines = open(f"{args.glue}/SST-2/dev.tsv", encoding="utf-8").read().splitlines()[1:]
rows = [l.split("\t") for l in lines if l]
sentences = [r[0].rstrip() for r in rows]
labels = [int(r[1]) for r in rows]
tok = AutoTokenizer.from_pretrained(args.model)
model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
model.train()
no_decay = ["bias", "LayerNorm.weight"]
groups = [
    {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
    {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
]
opt = torch.optim.AdamW(groups, lr=2e-5, eps=1e-8)
times, padded = [], []
for b in range(12):
    enc = tok(sentences[b * 32:(b + 1) * 32], padding=True, truncation=True, max_length=128, return_tensors="pt")
    y = torch.tensor(labels[b * 32:(b + 1) * 32])
    start = time.perf_counter()
    out = model(**enc, labels=y)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    if b >= 2:
        times.append(time.perf_counter() - start)
        padded.append(enc["input_ids"].numel())
print(f"PyTorch {torch.__version__} training step, batch 32, {sum(padded) // len(padded)} padded tokens per batch on average: median {statistics.median(times):.3f} s/step")
