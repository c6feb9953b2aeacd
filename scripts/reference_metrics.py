#!/usr/bin/env python3
"""Reference values for GLUE's metrics (tests/finetune.rs), from scikit-learn and scipy.

Writes tests/data/metrics_reference.json: seeded predictions and gold labels, and
  binary:     accuracy, f1 (class 1), mcc     — sklearn accuracy_score, f1_score, matthews_corrcoef
  one_class:  the same when every prediction is 0 (F1 and MCC are 0, as scikit-learn returns)
  scores:     pearson, spearman (ties)        — scipy pearsonr, spearmanr

Rerun (numpy, scikit-learn, scipy; not part of CI):
  .refvenv/bin/python scripts/reference_metrics.py > tests/data/metrics_reference.json
"""
import json

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

rng = np.random.default_rng(7)
gold = rng.integers(0, 2, 500)
pred = np.where(rng.random(500) < 0.8, gold, 1 - gold)
zeros = np.zeros(500, dtype=int)
g = np.round(rng.uniform(0, 5, 300), 1)
p = g + rng.normal(0, 1.2, 300)
p = np.round(p, 1)  # ties
out = {
    "binary": {
        "gold": gold.tolist(), "pred": pred.tolist(),
        "accuracy": accuracy_score(gold, pred), "f1": f1_score(gold, pred),
        "mcc": matthews_corrcoef(gold, pred),
    },
    "one_class": {
        "gold": gold.tolist(), "pred": zeros.tolist(),
        "accuracy": accuracy_score(gold, zeros), "f1": f1_score(gold, zeros, zero_division=0),
        "mcc": matthews_corrcoef(gold, zeros),
    },
    "scores": {
        "gold": g.tolist(), "pred": p.tolist(),
        "pearson": pearsonr(p, g)[0], "spearman": spearmanr(p, g)[0],
    },
}
print(json.dumps(out))
