#!/usr/bin/env bash
# The per-language table of README "Small multilingual students": Spearman on the STSb dev split
# (1,500 pairs per language, data/stsb-multi/dev.jsonl) of
#   teacher      the English cross-encoder of recipes/stsb-teacher.toml, on each language
#   e5 (12 layers) / init (pruned)   zero-shot bi-encoder cosine of multilingual-e5-small, all 12 layers
#                and the student's layer-pruned init (recipe `layers`), with e5's "query: " prompt
#   student      the distilled cross-encoder of recipes/stsb-multilingual.toml
#   bench/stsb_multilingual.sh [TEACHER] [E5_TRIMMED] [STUDENT] [LAYERS]
# defaults: runs/stsb-teacher/final runs/e5-small-stsb runs/stsb-multilingual/final 0,1,2,3,4,5.
# Env: CROSSDISTILL (default target/release/crossdistill), LANGS (default "en de es fr it nl").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
teacher="${1:-runs/stsb-teacher/final}"
e5="${2:-runs/e5-small-stsb}"
student="${3:-runs/stsb-multilingual/final}"
layers="${4:-0,1,2,3,4,5}"
bin="${CROSSDISTILL:-$root/target/release/crossdistill}"
langs="${LANGS:-en de es fr it nl}"
dev=data/stsb-multi/dev.jsonl
spearman() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["correlation"]["spearman"], 4))'; }
printf '| language | teacher | e5-small zero-shot (12 layers) | student init zero-shot (%s) | distilled student |\n' "$layers"
printf '| --- | --- | --- | --- | --- |\n'
for lang in $langs; do
  cols="${lang}_1,${lang}_2"
  t=$("$bin" eval --model "$teacher" --correlation "$dev" --columns "$cols" --label score --json 2>/dev/null | spearman)
  full=$("$bin" eval --model "$e5" --bi-encoder --prompt "query: " --correlation "$dev" --columns "$cols" --label score --json 2>/dev/null | spearman)
  init=$("$bin" eval --model "$e5" --bi-encoder --layers "$layers" --prompt "query: " --correlation "$dev" --columns "$cols" --label score --json 2>/dev/null | spearman)
  s=$("$bin" eval --model "$student" --correlation "$dev" --columns "$cols" --label score --json 2>/dev/null | spearman)
  printf '| %s | %s | %s | %s | %s |\n' "$lang" "$t" "$full" "$init" "$s"
done
