#!/usr/bin/env python3
"""Writes notebooks/key_numbers.json, the ranges scripts/run_notebooks.py checks each chapter's key
numbers against, from executed notebooks.

Quick profile (the tests): the runs are seeded and the fine-tunes fixed, so each key number is
reproducible; its range is the measured value ± twice its spread (the spread the chapter itself
prints: over k-means seeds, bootstrap resamples of the sentences, or a dev accuracy's binomial
standard error), and at least ± 1 % of the value, which covers summation order across machines.
Numbers with no spread of their own (no sampling is involved) get ± 2 %. Each entry records the
measured value and the spread beside its range.

Default profile (the main job): numbers of the base model alone (every `*_pretrained` key outside
chapter 07, chapter 00's, and the sample sizes) are reproducible there too, so their ranges are
derived the same way from a default-profile run, and kept from the previous key_numbers.json when
no such run is given. Numbers that involve the main job's own fine-tunes change with every training
budget and seed, so their ranges are the plausible span of the measure, stated per key below with
the reason.

Paper profile (ISOLAB_PROFILE=paper): other models altogether, so every key gets the plausible span.

Usage: python3 scripts/key_ranges.py [--only CHAPTER] target/notebook-test [out]
  target/notebook-test: the quick profile's executed notebooks (after `cargo test --test notebooks`);
  out: the default profile's (after `.venv/bin/python scripts/run_notebooks.py --out out`), optional;
  --only CHAPTER (a notebook's stem): rewrite that chapter's ranges alone, keeping the others.
"""
import json
import math
import sys
from pathlib import Path

import notebook_keys

ROOT = Path(__file__).resolve().parent.parent

WIDE = "the main job's own fine-tunes change with their budget and seed: the measure's plausible span"
BASE = ("the base model only, so reproducible in the default profile too: the value a default-profile "
        "run measured ± twice its spread, as in the quick profile")
PAPER = ("the paper profile measures other models (bert-base-uncased and TextAttack's fine-tunes): "
         "the measure's plausible span")
SEEDS = ("not checked: printed only when a task has several fine-tunes (ISOLAB_SEEDS >= 2), "
         "and the main job trains one")
# key: (quick spread rule, default range; None: not checked in the default profile). Rules: ("sd", KEY) the spread is another key number;
# ("log_sd", KEY) a spread of log10 of the value; ("binomial", KEY) the binomial standard error of
# an accuracy over KEY's count of sentences, or a number; ("half", KEY) half a printed noise
# margin (the margin is twice the spread); ("none",) no sampling involved; ("sd_count", KEY) a
# count whose spread is another key number, the range at least ± 1.
SPEC = {
    "00_tour": {
        "bank_cosine_first_layer": (("none",), [0.5, 1.0]),
        "bank_cosine_last_layer": (("none",), [-1.0, 0.99]),
    },
    "01_isotropy_by_layer": {
        "isotropy_pretrained": (("log_sd", "log10_isotropy_sd_pretrained"), [1e-6, 0.5]),
        "isotropy_finetuned": (("log_sd", "log10_isotropy_sd_finetuned"), [1e-12, 1.0]),
        "isotropy_both_signs_pretrained": (("log_sd", "log10_isotropy_sd_pretrained"), [1e-6, 0.5]),
        "isotropy_both_signs_finetuned": (("log_sd", "log10_isotropy_sd_finetuned"), [1e-12, 1.0]),
        "log10_isotropy_sd_pretrained": (("none",), [0.0, 1.0]),
        "log10_isotropy_sd_finetuned": (("none",), [0.0, 2.0]),
        "mean_cosine_pretrained": (("none",), [0.0, 0.6]),
        "mean_cosine_finetuned": (("none",), [0.0, 0.9]),
        "isoscore_pretrained": (("none",), [0.01, 1.0]),
        "isoscore_finetuned": (("none",), [1e-6, 1.0]),
    },
    "02_local_structure": {
        "nmi_class_pretrained": (("sd", "nmi_class_sd_pretrained"), [0.05, 1.0]),
        "nmi_class_finetuned": (("sd", "nmi_class_sd_finetuned"), [0.0, 1.0]),
        "nmi_class_sd_pretrained": (("none",), [0.0, 0.5]),
        "nmi_class_sd_finetuned": (("none",), [0.0, 0.5]),
        "nmi_frequency_pretrained": (("sd", "nmi_frequency_sd_pretrained"), [0.0, 1.0]),
        "nmi_frequency_finetuned": (("sd", "nmi_frequency_sd_finetuned"), [0.0, 1.0]),
        "nmi_frequency_sd_pretrained": (("none",), [0.0, 0.5]),
        "nmi_frequency_sd_finetuned": (("none",), [0.0, 0.5]),
        "ari_seed_to_seed_pretrained": (("sd", "ari_seed_to_seed_sd_pretrained"), [0.0, 1.0]),
        "ari_seed_to_seed_sd_pretrained": (("none",), [0.0, 0.6]),
        "ari_across_models": (("sd", "ari_across_models_sd"), [-0.2, 1.0]),
        "ari_across_models_sd": (("none",), [0.0, 0.6]),
        "nmi_class_plusplus_pretrained": (("sd", "nmi_class_plusplus_sd_pretrained"), [0.05, 1.0]),
        "nmi_class_plusplus_finetuned": (("sd", "nmi_class_plusplus_sd_finetuned"), [0.0, 1.0]),
        "nmi_class_plusplus_sd_pretrained": (("none",), [0.0, 0.5]),
        "nmi_class_plusplus_sd_finetuned": (("none",), [0.0, 0.5]),
    },
    "03_dominant_directions": {
        "dominant_pretrained": (("sd_count", "dominant_sd_pretrained"), [1, 76]),
        "dominant_finetuned": (("sd_count", "dominant_sd_finetuned"), [1, 76]),
        "dominant_sd_pretrained": (("none",), [0.0, 20.0]),
        "dominant_sd_finetuned": (("none",), [0.0, 20.0]),
        "participation_ratio_pretrained": (("sd", "participation_ratio_sd_pretrained"), [5.0, 384.0]),
        "participation_ratio_finetuned": (("sd", "participation_ratio_sd_finetuned"), [1.0, 384.0]),
        "participation_ratio_sd_pretrained": (("none",), [0.0, 50.0]),
        "participation_ratio_sd_finetuned": (("none",), [0.0, 50.0]),
        "lid_pretrained": (("none",), [3.0, 100.0]),
        "lid_finetuned": (("none",), [1.0, 100.0]),
    },
    "04_what_directions_encode": {
        "dev_sentences": (("none",), [872, 872]),
        # Token-level probes; the noise the verdict uses is at least the binomial error over the
        # dev sentences (a sentence's tokens share its label).
        **{f"probe_{target}_{what}_{role}": (("binomial", "dev_sentences"), span)
           for target, spans in {"token": ([0.5, 1.0], [0.1, 1.0], [0.4, 1.0]),
                                 "frequency": ([0.3, 1.0], [0.1, 1.0], [0.3, 1.0]),
                                 "task": ([0.5, 1.0], [0.1, 1.0], [0.4, 1.0])}.items()
           for what, span in zip(["full", "top4", "without_top4"], spans)
           for role in ["pretrained", "finetuned"]},
    },
    "05_isotropy_enhancement": {
        "sts_untouched_pretrained": (("none",), [60.0, 100.0]),
        "sts_untouched_finetuned": (("none",), [40.0, 100.0]),
        "sts_best_enhanced_pretrained": (("none",), [0.0, 100.0]),
        "sts_best_enhanced_finetuned": (("none",), [0.0, 100.0]),
        # The STS-B cross-encoder's own head (Spearman × 100), after the main job; the tests'
        # quick fine-tune has one too.
        "cross_head_untouched": (("none",), [60.0, 100.0]),
        "cross_head_best_enhanced": (("none",), [0.0, 100.0]),
        # Split-half probes: half of the SST-2 dev sentences (200 quick, 872 default) are scored.
        "probe_scored_sentences": (("none",), [436, 436]),
        "probe_untouched_pretrained": (("binomial", "probe_scored_sentences"), [0.55, 1.0]),
        "probe_untouched_finetuned": (("binomial", "probe_scored_sentences"), [0.4, 1.0]),
        "probe_best_enhanced_pretrained": (("binomial", "probe_scored_sentences"), [0.4, 1.0]),
        "probe_best_enhanced_finetuned": (("binomial", "probe_scored_sentences"), [0.4, 1.0]),
    },
    "06_finetune_live": {
        "best_dev_score": (("binomial", 200), [0.4, 1.0]),
        "isotropy_both_signs_start": (("none",), [1e-12, 1.0]),
        "isotropy_both_signs_end": (("none",), [1e-12, 1.0]),
        "dominant_start": (("none",), [0, 76]),
        "dominant_end": (("none",), [0, 76]),
    },
    "07_summary": {
        "effect_isotropy": (("half", "margin_isotropy"), [-10.0, 10.0]),
        "margin_isotropy": (("none",), [0.0, 3.0]),
        "effect_dominant": (("half", "margin_dominant"), [-76.0, 76.0]),
        "margin_dominant": (("none",), [0.0, 40.0]),
        "effect_participation_ratio": (("half", "margin_participation_ratio"), [-384.0, 384.0]),
        "margin_participation_ratio": (("none",), [0.0, 100.0]),
        "effect_cluster_agreement": (("half", "margin_cluster_agreement"), [-1.0, 1.0]),
        "margin_cluster_agreement": (("none",), [0.0, 1.0]),
        "effect_top4_probe": (("half", "margin_top4_probe"), [-1.0, 1.0]),
        "margin_top4_probe": (("none",), [0.0, 0.5]),
        "effect_sts_gain": (("half", "margin_sts_gain"), [-100.0, 100.0]),
        "margin_sts_gain": (("none",), [0.0, 50.0]),
        "effect_head_gain": (("half", "margin_head_gain"), [-1.0, 1.0]),
        "margin_head_gain": (("none",), [0.0, 0.5]),
        # Tasks whose claim-4 verdict has both halves: every classification task once the main job
        # has fine-tuned it (its own head scores the second half).
        "claim4_tasks_with_both_halves": (("none",), [4, 4]),
        # Printed only where a task has several fine-tunes: the tests train three quick SST-2
        # fine-tunes; the main job trains one per task unless ISOLAB_SEEDS says more.
        "finetune_runs_sst2": (("none",), None),
        "finetune_seed_sd_dev_score": (("none",), None),
        "finetune_seed_sd_log10_isotropy_live": (("none",), None),
        "finetune_seed_sd_dominant": (("none",), None),
        "finetune_seed_sd_participation_ratio": (("none",), None),
    },
    "08_isotropy_as_a_training_signal": {
        # minilm's last layer on 32 and 400 SST-2 dev sentences (the paper profile: its base model).
        "isoscore_batch": (("none",), [0.0, 0.3]),
        "isoscore_star_batch": (("none",), [0.0, 0.5]),
        "isoscore_many": (("none",), [0.0, 0.5]),
        # The live runs have the quick budget in every profile; the order is 1 when the last-layer
        # IsoScore ends lowest for λ = −5 and highest for λ = 5, the regulariser's whole point.
        "live_isoscore_order": (("none",), [1, 1]),
        "live_isoscore_end_neg": (("none",), [0.0, 0.5]),
        "live_isoscore_end_zero": (("none",), [0.0, 0.8]),
        "live_isoscore_end_pos": (("none",), [0.0, 1.0]),
        # SST-2's dev score change (points) at λ = ∓5 against λ = 0; the noise margins only where
        # each λ has two seeds or more (the quick profile trains two; the main job one unless
        # ISOLAB_SEEDS says more).
        "dev_change_neg": (("half", "noise_margin_neg"), [-5.0, 2.0]),
        "dev_change_pos": (("half", "noise_margin_pos"), [-20.0, 0.0]),
        "noise_margin_neg": (("none",), None),
        "noise_margin_pos": (("none",), None),
        "judged_cells": (("none",), None),
    },
}


def key_numbers(folder):
    """Each executed chapter's key numbers, by chapter and name."""
    return {
        path.stem: keys
        for path in sorted(Path(folder).glob("*.ipynb"))
        if (keys := notebook_keys.key_numbers(json.loads(path.read_text())))
    }


def quick_entry(value, rule, numbers):
    if rule[0] == "none":
        half, spread, what = 0.02 * abs(value), None, "no sampling involved: ± 2 %"
    elif rule[0] == "log_sd":
        sd = numbers[rule[1]]
        factor = 10 ** max(2 * sd, math.log10(1.01))
        return {"range": [value / factor, value * factor], "measured": value, "spread": sd,
                "spread_of": f"log10 of the value, bootstrap over sentences ({rule[1]})"}
    elif rule[0] == "binomial":
        n = numbers[rule[1]] if isinstance(rule[1], str) else rule[1]
        spread = math.sqrt(max(value * (1 - value), 1e-4) / n)
        half, what = 2 * spread, f"binomial standard error over {n:g} sentences"
    elif rule[0] == "half":
        spread = numbers[rule[1]] / 2
        half, what = 2 * spread, f"half the printed noise margin ({rule[1]})"
    elif rule[0] == "sd_count":
        spread = numbers[rule[1]]
        half, what = max(2 * spread, 1.0), f"bootstrap over sentences ({rule[1]}), at least ± 1"
    else:
        spread = numbers[rule[1]]
        half, what = 2 * spread, f"over seeds or resamples ({rule[1]})"
    half = max(half, 0.01 * abs(value))
    entry = {"range": [value - half, value + half], "measured": value, "spread": spread, "spread_of": what}
    return entry


# Counts set by the default profile's sample sizes: base-model numbers too.
SAMPLE_SIZES = {"dev_sentences", "probe_scored_sentences"}
PATH = ROOT / "notebooks" / "key_numbers.json"


# Numbers a chapter computes the same way in the quick and default profiles (chapter 08's formula
# cell and its live runs, which have the quick budget in both): the quick range holds for both.
SAME_IN_BOTH = {("08_isotropy_as_a_training_signal", name) for name in [
    "isoscore_batch", "isoscore_star_batch", "isoscore_many", "live_isoscore_order",
    "live_isoscore_end_neg", "live_isoscore_end_zero", "live_isoscore_end_pos"]}
SAME = "computed the same way in the quick and default profiles (same sentences, same budget): the quick range"

# Default-profile ranges set from the experiment's own measurements rather than a plausible span.
MEASURED = {
    ("08_isotropy_as_a_training_signal", name): (
        "the main job's experiment (SST-2, 300 steps, λ = ∓5 against 0) is deterministic per seed: "
        "seed 0 alone measured -0.92 / -10.55 points (2026-12-03, `isolab reg-experiment`), seeds 0-2 "
        "-1.7 / -6.9 (2026-12-02, README): a range that holds both, for any ISOLAB_SEEDS")
    for name in ["dev_change_neg", "dev_change_pos"]
}


def base_only(stem, name):
    return stem == "00_tour" or name in SAMPLE_SIZES or (name.endswith("_pretrained") and stem != "07_summary")


def main():
    args = sys.argv[1:]
    only = None
    if args[:1] == ["--only"] and len(args) >= 2:
        only, args = args[1], args[2:]
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    found = key_numbers(args[0])
    measured_default = key_numbers(args[1]) if len(args) == 2 else {}
    previous = json.loads(PATH.read_text()) if PATH.is_file() else {}
    out = {"_about": __doc__.split("Usage:")[0].strip()}
    for stem, keys in SPEC.items():
        if only is not None and stem != only:
            if stem not in previous:
                sys.exit(f"--only {only}: notebooks/key_numbers.json has no {stem} to keep")
            out[stem] = previous[stem]
            continue
        numbers = found.get(stem, {})
        out[stem] = {}
        for name, (rule, default) in keys.items():
            if name not in numbers:
                sys.exit(f"{stem}: key number {name} was not printed in {args[0]}")
            if (stem, name) in SAME_IN_BOTH:
                entry = {**quick_entry(numbers[name], rule, numbers), "why": SAME}
            elif not base_only(stem, name) or default is None:
                why = MEASURED.get((stem, name), SEEDS if default is None else WIDE)
                entry = {"range": default, "why": why}
            elif measured_default:
                at_default = measured_default.get(stem, {})
                if name not in at_default:
                    sys.exit(f"{stem}: key number {name} was not printed in {args[1]}")
                entry = {**quick_entry(at_default[name], rule, at_default), "why": BASE}
            else:
                entry = previous.get(stem, {}).get(name, {}).get("default")
                if not entry or "measured" not in entry:
                    sys.exit(f"{stem}: no default-profile measurement of {name}: pass the default run's folder")
            out[stem][name] = {"quick": quick_entry(numbers[name], rule, numbers), "default": entry,
                               "paper": {"range": default,
                                         "why": MEASURED.get((stem, name), SEEDS if default is None else PAPER)}}
        extra = set(numbers) - set(keys)
        if extra:
            sys.exit(f"{stem}: key numbers with no rule here: {sorted(extra)}")
    PATH.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
