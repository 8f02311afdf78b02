#!/usr/bin/env bash
# Candle teachers of the new architectures (ModernBERT, DeBERTa-v3, ELECTRA, a Qwen3 reranker) beside
# sentence-transformers CrossEncoder.predict, on the same CPU, pairs and batches: mid-size random
# models (base shapes, 4 layers; see bench/modern_teachers_peer.py), N synthetic pairs,
# max_length 128 (the Qwen3 reranker 256), batch 32, raw logits. The two sides run one after the other.
#
#   bench/modern_teachers.sh [N_PAIRS] [REPS]       (defaults 256 and 3)
#
# MODELS="deberta-v3 electra" times only those (default: modernbert deberta-v3 electra
# qwen3-reranker).
# Needs a Python venv with torch, transformers and sentence-transformers ($PEER_PYTHON, default
# /work/venv-ref/bin/python). Writes to $OUT (default /tmp/modern-teachers-bench).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
n_pairs="${1:-256}"
reps="${2:-3}"
python="${PEER_PYTHON:-/work/venv-ref/bin/python}"
out="${OUT:-/tmp/modern-teachers-bench}"
read -r -a models <<< "${MODELS:-modernbert deberta-v3 electra qwen3-reranker}"
mkdir -p "$out"

echo "== building (release)" >&2
cargo build --release --locked --example modern_teacher_bench >&2
bench="${CARGO_TARGET_DIR:-$root/target}/release/examples/modern_teacher_bench"

echo "== models and pairs -> $out" >&2
[ -d "$out/qwen3-reranker" ] || "$python" bench/modern_teachers_peer.py prepare "$out" "$n_pairs" >&2
echo "== sentence-transformers" >&2
"$python" bench/modern_teachers_peer.py peers "$out" "$reps" 32 "${models[@]}" | tee "$out/peers.json"
echo "== crossdistill" >&2
"$bench" "$out/pairs.jsonl" "$reps" 32 "${models[@]/#/$out/}" | tee "$out/ours.json"
