#!/usr/bin/env bash
# Training throughput of a ModernBERT student beside PyTorch on the same CPU, shapes and batches:
# a random ModernBERT of jhu-clsp/ettin-encoder-17m's shape (and a BERT of the same width, depth
# and vocabulary, for the BERT path's figure in the same conditions), batch 16, every pair padded
# to 128 tokens, forward + backward + clip + AdamW, 1 warm-up then 6 timed steps; PyTorch first
# (sdpa and eager attention), then crossdistill (`benches/student.rs train`).
#
#   bench/modernbert_student.sh                 release build (cargo bench profile)
#   FAST_BUILD=1 bench/modernbert_student.sh    dev profile with crossdistill at opt-level 3 in
#                                               its own target dir (only crossdistill recompiles)
#
# Needs a Python venv with torch and transformers ($PEER_PYTHON, default /work/venv-ref/bin/python).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PEER_PYTHON:-/work/venv-ref/bin/python}"
out="${OUT:-/tmp/modernbert-student-bench}"
pairs="$root/data/msmarco/pairs.jsonl"
mkdir -p "$out"
if [ -n "${FAST_BUILD:-}" ]; then
    target="${BENCH_TARGET_DIR:-/tmp/target-bench}"
    CARGO_TARGET_DIR="$target" CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --bench student >&2
    bench=$(ls -t "$target"/debug/deps/student-* | grep -v '\.d$' | head -n 1)
else
    cargo bench --bench student --no-run >&2
    bench=$(ls -t "${CARGO_TARGET_DIR:-$root/target}"/release/deps/student-* | grep -v '\.d$' | head -n 1)
fi
[ -d "$out/ettin-17m-shape" ] || "$python" bench/modernbert_student_peer.py prepare "$out" >&2
if [ ! -d "$out/bert-same-shape" ]; then
    "$python" - "$out" <<'PY' >&2
import shutil, sys, torch
from pathlib import Path
from transformers import AutoModelForSequenceClassification, BertConfig
out = Path(sys.argv[1]) / "bert-same-shape"
out.mkdir(exist_ok=True)
config = BertConfig(vocab_size=50368, hidden_size=256, intermediate_size=768, num_hidden_layers=7,
                    num_attention_heads=4, max_position_embeddings=512, num_labels=1,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
torch.manual_seed(0)
AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
for name in ["tokenizer.json", "tokenizer_config.json"]:
    shutil.copy(Path("tests/fixtures/tiny-bert-ce") / name, out / name)
PY
fi
for model in ettin-17m-shape bert-same-shape; do
    echo "== $model: PyTorch" >&2
    "$python" bench/modernbert_student_peer.py train "$out" "$pairs" "$model" 2>/dev/null | grep peer
    echo "== $model: crossdistill" >&2
    "$bench" train "$out/$model" "$pairs"
done
