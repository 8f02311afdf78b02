#!/usr/bin/env python3
"""Build the parallel STSb files of data/stsb-multi from stsb-multi-mt's per-language CSVs.

Each output row holds one sentence pair in every language, side by side, and the gold similarity:
  {"en_1": ..., "en_2": ..., "de_1": ..., "de_2": ..., ..., "score": similarity / 5}
The CSVs are parallel line by line (same pairs and scores in every language); this script checks that
the scores agree and fails otherwise.

Files (all 11 languages of stsb-multi-mt in every file):
  train.jsonl    the 5,749 train rows
  dev.jsonl      500 of the 1,500 dev rows: model selection (eval during training, best checkpoint)
  heldout.jsonl  the other 1,000 dev rows: reported, never looked at by a decision (no eval during
                 training reads it); the split is a seeded shuffle of the dev rows (seed 2026), so
                 both halves mix the dev split's genres
The STSb test split is not used (kept out of this repository's inputs on purpose).

Usage: data/stsb-multi/make.py STSB_MULTI_MT_DIR  (e.g. the upstream repository's data/ folder)
Standard library only.
"""
import csv
import json
import os
import random
import sys

LANGS = ["en", "de", "es", "fr", "it", "nl", "pl", "pt", "ru", "zh", "ja"]
DEV_ROWS = 500
SPLIT_SEED = 2026


def read(src, lang, split):
    with open(os.path.join(src, f"stsb-{lang}-{split}.csv"), newline="", encoding="utf-8") as f:
        return [(row[0], row[1], float(row[2])) for row in csv.reader(f)]


def rows(src, split, langs):
    columns = {lang: read(src, lang, split) for lang in langs}
    n = len(columns["en"])
    out = []
    for i in range(n):
        row = {}
        for lang in langs:
            s1, s2, score = columns[lang][i]
            if abs(score - columns["en"][i][2]) > 1e-9:
                sys.exit(f"{lang} {split} row {i + 1}: score {score} differs from en's {columns['en'][i][2]}")
            row[f"{lang}_1"], row[f"{lang}_2"] = s1, s2
        row["score"] = round(columns["en"][i][2] / 5.0, 4)
        out.append(row)
    return out


def write(rows, out):
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    print(f"{out}: {len(rows)} rows, languages {' '.join(LANGS)}")


if __name__ == "__main__":
    src = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    write(rows(src, "train", LANGS), os.path.join(here, "train.jsonl"))
    dev = rows(src, "dev", LANGS)
    order = list(range(len(dev)))
    random.Random(SPLIT_SEED).shuffle(order)
    selection = sorted(order[:DEV_ROWS])
    heldout = sorted(order[DEV_ROWS:])
    write([dev[i] for i in selection], os.path.join(here, "dev.jsonl"))
    write([dev[i] for i in heldout], os.path.join(here, "heldout.jsonl"))
