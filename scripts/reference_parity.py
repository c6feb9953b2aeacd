#!/usr/bin/env python3
"""Reference values for the encoder-parity and I(W) tests, from Hugging Face transformers and numpy.

Writes tests/data/parity_minilm.safetensors with, for each probe input k:
  s{k}_ids, s{k}_type_ids         token ids and token type ids from the tokenizer (int64)
  s{k}_layer{l}                   hidden state l (0 = embedding output) on that input, float32
and for the I(W) check:
  iso_random                      a seeded anisotropic random matrix (2000 x 32, mean offset), float32
  iso_random_expected             [I(W), I(W) both signs] on it, float64
  iso_real_expected               [I(W), I(W) both signs] on the concatenated last-layer rows, float64
  cosine_real_expected            [exact mean cosine over all pairs of distinct last-layer rows]
  sst2_dev_last_expected          [I(W), I(W) both signs, token count] of the last layer over all of
                                  SST-2 dev ([CLS]/[SEP] kept, inputs truncated to 128 tokens)

I(W) follows Mu & Viswanath as Rajaee & Pilehvar compute it (eigenvectors u of W^T W, W not centred,
F(u) = sum_i exp(u^T w_i), I = min F / max F), with each eigenvector oriented so that its component
of largest magnitude is positive (first on ties), the convention isotropy_lab documents.

Rerun (needs torch, transformers, numpy, safetensors; not part of CI):
  bash scripts/reference_env.sh   # the pinned reference environment in .refvenv
  cargo run -- fetch minilm
  .refvenv/bin/python scripts/reference_parity.py --model data/models/minilm --glue data/glue
"""
import argparse
import json

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModel, AutoTokenizer

PROBES = [
    ("it 's a charming and often affecting journey . ", None),
    ("The quick brown fox jumps over the lazy dog.", None),
    ("Isotropy, anisotropy & the geometry of 1,024-dimensional spaces!", None),
    ("A man is playing a guitar.", "A person plays an instrument."),
    ("Hi.", None),
    ("Although the committee had reviewed every proposal twice, the final decision about funding "
     "the unconventional research programme was postponed until the following spring.", None),
]


def orient(u):
    """Flip each column so that its largest-magnitude entry is positive (first on ties)."""
    idx = np.argmax(np.abs(u), axis=0)
    signs = np.sign(u[idx, np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    return u * signs


def logsumexp(z, axis):
    m = z.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def isotropy(w):
    w = np.asarray(w, dtype=np.float64)
    _, u = np.linalg.eigh(w.T @ w)
    u = orient(u)
    z = w @ u
    plus = logsumexp(z, 0)
    minus = logsumexp(-z, 0)
    both = np.concatenate([plus, minus])
    return np.array([np.exp(plus.min() - plus.max()), np.exp(both.min() - both.max())])


def mean_cosine_all_pairs(w):
    w = np.asarray(w, dtype=np.float64)
    n = w / np.linalg.norm(w, axis=1, keepdims=True)
    s = n @ n.T
    k = len(w)
    return np.array([(s.sum() - np.trace(s)) / (k * (k - 1))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="data/models/minilm")
    ap.add_argument("--glue", default="data/glue")
    ap.add_argument("--out", default="tests/data/parity_minilm.safetensors")
    args = ap.parse_args()

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").eval()
    out = {}
    last_rows = []
    with torch.no_grad():
        for k, (a, b) in enumerate(PROBES):
            enc = tok(a, b, return_tensors="pt", truncation=False, padding=False)
            hs = model(**enc, output_hidden_states=True).hidden_states
            out[f"s{k}_ids"] = enc["input_ids"][0].numpy().astype(np.int64)
            out[f"s{k}_type_ids"] = enc["token_type_ids"][0].numpy().astype(np.int64)
            for layer, h in enumerate(hs):
                out[f"s{k}_layer{layer}"] = h[0].numpy().astype(np.float32)
            last_rows.append(hs[-1][0].numpy())

    with open(f"{args.glue}/SST-2/dev.tsv", encoding="utf-8") as f:
        sst2 = [line.split("\t")[0].rstrip() for line in f.read().splitlines()[1:]]
    rows = []
    with torch.no_grad():
        for b in range(0, len(sst2), 32):
            enc = tok(sst2[b:b + 32], return_tensors="pt", truncation=True, max_length=128, padding=True)
            last = model(**enc).last_hidden_state
            rows.append(last[enc["attention_mask"].bool()].numpy())
    sst2_last = np.concatenate(rows).astype(np.float64)
    out["sst2_dev_last_expected"] = np.concatenate([isotropy(sst2_last), [len(sst2_last)]])

    rng = np.random.default_rng(20211)
    scales = np.geomspace(3.0, 0.05, 32)
    iso_random = (rng.standard_normal((2000, 32)) * scales + 0.3).astype(np.float32)
    out["iso_random"] = iso_random
    out["iso_random_expected"] = isotropy(iso_random)
    real = np.concatenate(last_rows).astype(np.float64)
    out["iso_real_expected"] = isotropy(real)
    out["cosine_real_expected"] = mean_cosine_all_pairs(real)

    meta = {"probes": json.dumps(PROBES), "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "numpy": np.__version__}
    save_file(out, args.out, metadata=meta)
    print(f"wrote {args.out}: I(W) random {out['iso_random_expected']}, real {out['iso_real_expected']}, "
          f"cosine {out['cosine_real_expected']}, SST-2 dev last layer {out['sst2_dev_last_expected']}")


if __name__ == "__main__":
    main()
