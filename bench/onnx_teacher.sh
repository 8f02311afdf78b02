#!/usr/bin/env bash
# ONNX teacher benchmark: pairs/s of crossdistill's ONNX teacher (ort, f32 and dynamic int8),
# its candle teacher, onnxruntime's own Python loop (sorted and unsorted) and
# sentence-transformers CrossEncoder.predict, in one run, on the same model, pairs and batches:
# all-MiniLM-L6-v2 as a cross-encoder (fresh 1-logit head, seed 0), N MS MARCO pairs,
# max_length 128, batch 32. Also the int8 teacher's Spearman against the f32 teacher.
#
#   bench/onnx_teacher.sh [N_PAIRS] [REPS]          (defaults 512 and 3)
#   TEACHER=runs/stsb-teacher/final PAIRS=stsb bench/onnx_teacher.sh
#       a trained reranker instead of the fresh head (the int8 Spearman needs a real score
#       spread), on MS MARCO pairs (PAIRS=msmarco, default) or the STSb dev pairs (PAIRS=stsb)
#
# Needs (see shared/bench/README.md): the model from shared/models/fetch-all-MiniLM-L6-v2.sh;
# a Python venv with torch, sentence-transformers, onnx and onnxruntime==1.31.1 ($PEER_PYTHON,
# default /tmp/peer/bin/python); shared/ ($SHARED, default ../shared). Everything it writes goes
# to $OUT (default /tmp/onnx-teacher-bench): the saved model, its ONNX exports, the pairs and
# results.json. The Rust teachers load the same libonnxruntime as the Python loop.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
n_pairs="${1:-512}"
reps="${2:-3}"
python="${PEER_PYTHON:-/tmp/peer/bin/python}"
shared="${SHARED:-$root/../shared}"
out="${OUT:-/tmp/onnx-teacher-bench}"
mkdir -p "$out"
# shared/bench/README.md: the peer venv's numpy/torch must not see these.
py() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" "$@"; }

if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(py -c "import onnxruntime, os, glob; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.*')))[-1])")
  export ORT_DYLIB_PATH
fi

echo "== building (release)" >&2
cargo build --release --locked --example onnx_teacher_bench >&2
bench="${CARGO_TARGET_DIR:-$root/target}/release/examples/onnx_teacher_bench"

echo "== model, ONNX exports, pairs -> $out" >&2
py bench/onnx_teacher_peer.py prepare "$shared" "$out" "$n_pairs" >"$out/prepare.json"
cat "$out/prepare.json" >&2

echo "== Python peers" >&2
py bench/onnx_teacher_peer.py peers "$out" "$reps" >"$out/peers.json"
echo "== crossdistill teachers" >&2
"$bench" "$out/minilm-ce" "$out/pairs.jsonl" "$reps" 32 128 >"$out/teachers.json"

py - "$out" <<'EOF'
import json, os, sys
import numpy as np
out = sys.argv[1]
peers = json.load(open(os.path.join(out, "peers.json")))
teachers = json.load(open(os.path.join(out, "teachers.json")))
peer_logits = json.load(open(os.path.join(out, "peer_logits.json")))
ours = teachers.pop("logits")
st = np.array(peer_logits["st_predict"])
rows = [("crossdistill ONNX teacher (ort, f32)", teachers["ort_teacher_f32"]),
        ("crossdistill ONNX teacher (ort, int8 dynamic)", teachers["ort_teacher_int8"]),
        ("crossdistill candle teacher", teachers["candle_teacher"]),
        ("onnxruntime Python loop, sorted (f32)", peers["ort_python_sorted"]),
        ("onnxruntime Python loop, unsorted (f32)", peers["ort_python_unsorted"]),
        ("onnxruntime Python loop, sorted (int8)", peers["ort_python_int8_sorted"]),
        ("sentence-transformers CrossEncoder.predict", peers["st_predict"])]
anchor = peers["st_predict"]["median_pairs_per_s"]
print(f"{peers['n_pairs']} pairs, {peers['mean_tokens_per_pair']:.1f} tokens/pair, max_length 128, batch 32, "
      f"{teachers['threads']} threads, onnxruntime {peers['onnxruntime']}, torch {peers['torch']}")
print(f"{'':46} {'median pairs/s':>14} {'best':>8} {'vs ST':>6}")
for name, r in rows:
    print(f"{name:46} {r['median_pairs_per_s']:14.1f} {r['best_pairs_per_s']:8.1f} {r['median_pairs_per_s'] / anchor:6.2f}")
print(f"ort f32 teacher vs torch (ST predict): max |dlogit| = {np.abs(np.array(ours['ort_teacher_f32']) - st).max():.2e}")
print(f"ort f32 teacher vs candle teacher:     max |dlogit| = {teachers['ort_f32_vs_candle_max_abs_logit_diff']:.2e}")
print(f"int8 vs f32 teacher: Spearman = {teachers['int8_vs_f32_spearman']:.4f}, "
      f"max |dlogit| = {teachers['int8_vs_f32_max_abs_logit_diff']:.3f}, f32 logit std = {np.std(ours['ort_teacher_f32']):.3f}")
json.dump({"prepare": json.load(open(os.path.join(out, "prepare.json"))), "peers": peers, "teachers": teachers},
          open(os.path.join(out, "results.json"), "w"), indent=1)
EOF
