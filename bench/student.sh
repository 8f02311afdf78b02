#!/usr/bin/env bash
# Student speed against its peers, in one run (issue: predict vs sentence-transformers, training
# step vs PyTorch). Needs the peer venv and all-MiniLM-L6-v2 (see shared/bench/README.md):
#   SHARED=../shared PEER=/tmp/peer/bin/python bench/student.sh [N_PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
peer=${PEER:-/tmp/peer/bin/python}
n=${1:-512}
out=${OUT:-/tmp/crossdistill-student-bench}
mkdir -p "$out"
model=$(bash "$shared/models/fetch-all-MiniLM-L6-v2.sh" | tail -n 1)
"$peer" bench/pairs.py "$shared" "$out/pairs.jsonl" "$n"
cargo build --release --bench student >/dev/null 2>&1 || cargo bench --bench student --no-run
echo "== peer (sentence-transformers predict, onnxruntime, PyTorch training step)"
MINILM="$model" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$peer" "$shared/bench/peer_anchor.py" "$shared" "$out/peer" "$n" | tee "$out/peer.json"
echo "== crossdistill"
cargo bench --bench student -- predict "$model" "$out/pairs.jsonl" | tee "$out/predict.json"
cargo bench --bench student -- train "$model" "$out/pairs.jsonl" | tee "$out/train.json"
