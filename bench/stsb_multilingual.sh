#!/usr/bin/env bash
# The tables of README "Small multilingual students": Spearman per language on a split of
# data/stsb-multi (default heldout.jsonl: 1,000 STSb dev rows that no training run or model
# selection reads; dev.jsonl holds the other 500), for
#   each teacher    the English cross-encoders (recipes/stsb-teacher*.toml), on every language
#   ensemble        the mean of the teachers' logits (what the student recipe distils), with 2+
#   e5 zero-shot    multilingual-e5-small's bi-encoder cosine, all 12 layers, "query: " prompt
#   student         the distilled cross-encoder(s) (recipes/stsb-multilingual*.toml)
# then size and speed: encoder layers, parameters (all / without the embedding tables), and
# predict throughput on the split's English pairs (batch 32, 3 passes, load included).
#
#   bench/stsb_multilingual.sh
# Env: TEACHERS (default "runs/stsb-teacher-e5/final runs/stsb-teacher/final"), E5 (default
# runs/e5-small-stsb), STUDENTS (default runs/stsb-multilingual/final; "" for none), SPLIT (default
# data/stsb-multi/heldout.jsonl), LANGS (default all 11), CROSSDISTILL (default
# target/release/crossdistill), SPEED=0 to skip the speed column.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
teachers="${TEACHERS-runs/stsb-teacher-e5/final runs/stsb-teacher/final}"
e5="${E5:-runs/e5-small-stsb}"
students="${STUDENTS-runs/stsb-multilingual/final}"
split="${SPLIT:-data/stsb-multi/heldout.jsonl}"
langs="${LANGS:-en de es fr it nl pl pt ru zh ja}"
bin="${CROSSDISTILL:-$root/target/release/crossdistill}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# predict's input for one language: {"query", "passage"} rows of the split's columns.
pairs() {
  python3 - "$split" "$1" "$2" <<'PY'
import json, sys
path, lang, out = sys.argv[1:]
with open(path, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
    for line in f:
        row = json.loads(line)
        o.write(json.dumps({"query": row[f"{lang}_1"], "passage": row[f"{lang}_2"]}, ensure_ascii=False) + "\n")
PY
}
# Spearman of the mean of the score files against the split's gold scores.
spearman() {
  python3 - "$split" "$@" <<'PY'
import json, sys
gold = [json.loads(l)["score"] for l in open(sys.argv[1], encoding="utf-8")]
runs = [[json.loads(l)["score"] for l in open(p, encoding="utf-8")] for p in sys.argv[2:]]
scores = [sum(r[i] for r in runs) / len(runs) for i in range(len(gold))]
def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r
a, b = ranks(scores), ranks(gold)
n = len(a); ma = sum(a) / n; mb = sum(b) / n
cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
var = (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5
print(f"{cov / var:.3f}")
PY
}
name() { basename "$(dirname "$1")"; }

header="| language |"
rule="| --- |"
for t in $teachers; do header="$header teacher $(name "$t") |"; rule="$rule --- |"; done
nt=$(echo $teachers | wc -w)
if [ "$nt" -gt 1 ]; then header="$header teacher ensemble (mean) |"; rule="$rule --- |"; fi
header="$header e5-small zero-shot (12 layers) |"; rule="$rule --- |"
for s in $students; do header="$header student $(name "$s") |"; rule="$rule --- |"; done
echo "Spearman on $split ($(wc -l <"$split") pairs per language)"
echo
echo "$header"
echo "$rule"
for lang in $langs; do
  pairs "$lang" "$work/$lang.jsonl"
  line="| $lang |"
  files=()
  for t in $teachers; do
    out="$work/$(name "$t")-$lang.jsonl"
    "$bin" predict --model "$t" --input "$work/$lang.jsonl" --output "$out" --activation identity 2>/dev/null
    files+=("$out")
    line="$line $(spearman "$out") |"
  done
  if [ "$nt" -gt 1 ]; then line="$line $(spearman "${files[@]}") |"; fi
  e5s=$("$bin" eval --model "$e5" --bi-encoder --prompt "query: " --correlation "$split" \
    --columns "${lang}_1,${lang}_2" --label score --json 2>/dev/null |
    python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["correlation"]["spearman"])')
  line="$line $e5s |"
  for s in $students; do
    out="$work/$(name "$s")-$lang.jsonl"
    "$bin" predict --model "$s" --input "$work/$lang.jsonl" --output "$out" --activation identity 2>/dev/null
    line="$line $(spearman "$out") |"
  done
  echo "$line"
done

# Size: layers and parameters from config.json and the safetensors header (standard library).
size() {
  python3 - "$1" <<'PY'
import json, struct, sys
from pathlib import Path
d = Path(sys.argv[1])
config = json.loads((d / "config.json").read_text())
total = embed = 0
for f in sorted(d.glob("*.safetensors")):
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in meta["shape"]:
            count *= dim
        total += count
        if "embeddings" in key:
            embed += count
print(f"{config['num_hidden_layers']} | {config['hidden_size']} | {total / 1e6:.1f}M | {(total - embed) / 1e6:.1f}M")
PY
}
echo
echo "| model | layers | width | parameters | without embeddings | predict pairs/s (en, batch 32) |"
echo "| --- | --- | --- | --- | --- | --- |"
pairs en "$work/en.jsonl"
cat "$work/en.jsonl" "$work/en.jsonl" "$work/en.jsonl" >"$work/en3.jsonl"
n=$(wc -l <"$work/en3.jsonl")
for m in $teachers $students; do
  speed="-"
  if [ "${SPEED:-1}" != 0 ]; then
    start=$(date +%s.%N)
    "$bin" predict --model "$m" --input "$work/en3.jsonl" --output "$work/speed.jsonl" --batch-size 32 2>/dev/null
    speed=$(python3 -c "import sys; print(f'{$n / ($(date +%s.%N) - $start):.0f}')")
  fi
  echo "| $(name "$m") | $(size "$m") | $speed |"
done
echo "| e5-small (bi-encoder baseline) | $(size "$e5") | - |"
