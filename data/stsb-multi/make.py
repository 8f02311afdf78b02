#!/usr/bin/env python3
"""Build the parallel STSb files of data/stsb-multi from stsb-multi-mt's per-language CSVs.

Each output row holds one sentence pair in every language, side by side, and the gold similarity:
  {"en_1": ..., "en_2": ..., "de_1": ..., "de_2": ..., ..., "score": similarity / 5}
The CSVs are parallel line by line (same pairs and scores in every language); this script checks that
the scores agree and fails otherwise.

Usage: data/stsb-multi/make.py STSB_MULTI_MT_DIR  (e.g. the upstream repository's data/ folder)
Standard library only.
"""
import csv
import json
import os
import sys

TRAIN_LANGS = ["en", "de", "es", "fr", "it", "nl"]
DEV_LANGS = ["en", "de", "es", "fr", "it", "nl", "pl", "pt", "ru", "zh", "ja"]


def read(src, lang, split):
    with open(os.path.join(src, f"stsb-{lang}-{split}.csv"), newline="", encoding="utf-8") as f:
        return [(row[0], row[1], float(row[2])) for row in csv.reader(f)]


def build(src, split, langs, out):
    columns = {lang: read(src, lang, split) for lang in langs}
    n = len(columns["en"])
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(n):
            row = {}
            for lang in langs:
                s1, s2, score = columns[lang][i]
                if abs(score - columns["en"][i][2]) > 1e-9:
                    sys.exit(f"{lang} {split} row {i + 1}: score {score} differs from en's {columns['en'][i][2]}")
                row[f"{lang}_1"], row[f"{lang}_2"] = s1, s2
            row["score"] = round(columns["en"][i][2] / 5.0, 4)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    print(f"{out}: {n} rows, languages {' '.join(langs)}")


if __name__ == "__main__":
    src = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    build(src, "train", TRAIN_LANGS, os.path.join(here, "train.jsonl"))
    build(src, "dev", DEV_LANGS, os.path.join(here, "dev.jsonl"))
