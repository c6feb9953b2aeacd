#!/usr/bin/env python3
"""Stand-ins of the paper profile's models, at their real size, in a Hugging Face cache.

The paper profile (ISOLAB_PROFILE=paper) downloads `bert-base-uncased` and TextAttack's GLUE
fine-tunes of it. Where the hub cannot be reached, this writes models of exactly their shape
(BERT-base: 12 layers, 768 wide, 12 heads, 3,072 intermediate, the uncased 30,522-token
vocabulary; the fine-tunes with a classification head of their task's width) with random weights
into HF_HOME's hub layout under the same ids, so the chapters run unchanged with
HF_HUB_OFFLINE=1. Their numbers mean nothing; their cost is the real models' cost, since no
step of extraction, geometry or training depends on the values of the weights (k-means and the
probes' iteration counts aside). Used by scripts/paper_cost.sh and the bench scripts' BERT-base
row. The tokenizer is minilm's, which is bert-base-uncased's WordPiece vocabulary.

Needs the reference environment (scripts/reference_env.sh: torch, transformers).

Usage: python scripts/paper_standin.py HF_HOME TOKENIZER_JSON
"""
import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForPreTraining, BertForSequenceClassification

COMMIT = "0" * 40
# TextAttack's fine-tunes the profile names (src/notebook/profile.rs, paper_finetune) and the
# width of their heads (STS-B is a regression: one output).
FINETUNES = {
    "SST-2": 2,
    "MRPC": 2,
    "CoLA": 2,
    "RTE": 2,
    "STS-B": 1,
    "QNLI": 2,
    "WNLI": 2,
}


def write(hf_home: Path, hub_id: str, model, tokenizer_json: Path) -> None:
    """Saves `model` as hf-hub would have downloaded `hub_id`: refs/main names a snapshot."""
    repo = hf_home / "hub" / ("models--" + hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    if (snapshot / "model.safetensors").is_file():
        print(f"{hub_id}: already in {repo}")
        return
    tmp = repo / "snapshots" / (COMMIT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.copy(tokenizer_json, tmp / "tokenizer.json")
    tmp.rename(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    print(f"{hub_id}: written to {repo}")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    hf_home, tokenizer_json = Path(sys.argv[1]), Path(sys.argv[2])
    vocab = len(json.loads(tokenizer_json.read_text())["model"]["vocab"])
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab)  # BertConfig's defaults are bert-base-uncased's shape
    write(hf_home, "google-bert/bert-base-uncased", BertForPreTraining(config), tokenizer_json)
    for task, labels in FINETUNES.items():
        head = BertConfig(vocab_size=vocab, num_labels=labels)
        model = BertForSequenceClassification(head)
        write(hf_home, f"textattack/bert-base-uncased-{task}", model, tokenizer_json)


if __name__ == "__main__":
    main()
