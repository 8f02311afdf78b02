#!/usr/bin/env bash
# The experiments behind README "Small multilingual students" → "What limits the student": the
# student recipe (recipes/stsb-multilingual.toml) at a quarter of its epoch, varying one thing at
# a time, then the per-language Spearman on the held-out rows (bench/stsb_multilingual.sh):
#   mse          the recipe as shipped: MSE on the two-teacher ensemble's score of each pair
#   mse-minilm   the same with the weaker teacher alone (the MiniLM cross-encoder)
#   margin-mse   MarginMSE on the ensemble's margins: (sentence 1, its pair, another row's
#                sentence 2), one random negative per row, 16 rows per batch (32 pairs, as MSE)
#   list-net     ListNet on the ensemble's scores of (sentence 1, [its pair, 3 other rows'
#                sentence 2]), 8 rows per batch (32 pairs)
# The negatives come from the same language as the row (seeded; data/stsb-multi/train.jsonl
# rows only). Needs the teachers and the trimmed e5 of the recipe (see its header).
#
#   bench/stsb_losses.sh
# Env: OUT (default runs/stsb-losses), STEPS (default 494: a quarter of the 1,977 steps of one
# epoch), RUNS (default "mse mse-minilm margin-mse list-net"), CACHE (teacher-score cache dir,
# default $OUT/cache), CROSSDISTILL (default target/release/crossdistill).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="$(realpath -m "${OUT:-runs/stsb-losses}")"
steps="${STEPS:-494}"
runs="${RUNS:-mse mse-minilm margin-mse list-net}"
cache="${CACHE:-$out/cache}"
bin="${CROSSDISTILL:-$root/target/release/crossdistill}"
langs="en de es fr it nl pl pt ru zh ja"
mkdir -p "$out"

# Negatives: n1 (MarginMSE) and list = [sentence 2, three other rows' sentence 2] per language,
# for the training rows and for the dev rows the run's held-out agreement reads ([data.eval]).
negatives() {
  python3 - "$1" "$2" $langs <<'PY'
import json, random, sys
src, dst, *langs = sys.argv[1:]
rows = [json.loads(line) for line in open(src, encoding="utf-8")]
rng = random.Random(2026)
with open(dst, "w", encoding="utf-8") as out:
    for i, row in enumerate(rows):
        others = []
        while len(others) < 3:
            j = rng.randrange(len(rows))
            if j != i and j not in others:
                others.append(j)
        for lang in langs:
            row[f"{lang}_n1"] = rows[others[0]][f"{lang}_2"]
            row[f"{lang}_list"] = [row[f"{lang}_2"]] + [rows[j][f"{lang}_2"] for j in others]
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
PY
}
negatives data/stsb-multi/train.jsonl "$out/train-negatives.jsonl"
negatives data/stsb-multi/dev.jsonl "$out/dev-negatives.jsonl"

groups() { # groups SUFFIX...: [["en_1","en_SUFFIX"...], ["de_1", ...], ...]
  python3 -c 'import json,sys; print(json.dumps([[f"{l}_1"] + [f"{l}_{s}" for s in sys.argv[2:]] for l in sys.argv[1].split()]))' "$langs" "$@"
}

for run in $runs; do
  args=(--set "run.output_dir=$out/$run" --set "train.max_steps=$steps" --set "cache.dir=$cache")
  case "$run" in
    mse) ;;
    mse-minilm) args+=(--set "teacher.0.model=../runs/stsb-teacher/final") ;;
    margin-mse)
      cols='["en_1", "en_2", "en_n1"]'
      args+=(--set "data.train.path=$out/train-negatives.jsonl" --set "data.eval.path=$out/dev-negatives.jsonl"
        --set "teacher.0.columns=$cols" --set "teacher.1.columns=$cols" --set "student.columns=$(groups 2 n1)"
        --set 'loss.0.kind="margin_mse"' --set "train.batch_size=16") ;;
    list-net)
      cols='["en_1", "en_list"]'
      args+=(--set "data.train.path=$out/train-negatives.jsonl" --set "data.eval.path=$out/dev-negatives.jsonl"
        --set "teacher.0.columns=$cols" --set "teacher.1.columns=$cols" --set "student.columns=$(groups list)"
        --set 'loss.0.kind="list_net"' --set "train.batch_size=8") ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
  if [ -f "$out/$run/final/model.safetensors" ]; then
    echo "$run: $out/$run/final exists, kept" >&2
    continue
  fi
  start=$(date +%s)
  "$bin" train recipes/stsb-multilingual.toml "${args[@]}" 2>"$out/$run.log"
  echo "$run: $(( $(date +%s) - start )) s" | tee -a "$out/times.txt" >&2
done

students=""
for run in $runs; do students="$students $out/$run/final"; done
STUDENTS="$students" TEACHERS="" SPEED=0 CROSSDISTILL="$bin" bench/stsb_multilingual.sh
