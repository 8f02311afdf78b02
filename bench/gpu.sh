#!/usr/bin/env bash
# The GPU goals of the README's "Precision and devices", measured in one run beside PyTorch on the
# same GPU: ../shared/bench/peer_gpu.py (MiniLM-L6 shape, random weights, token lengths 40..128)
# and crossdistill on the same model shape, the same token lengths and batches:
#   predict f32 / bf16        `predict --device cuda --batch-size 64 [--dtype bf16]`; steady-state
#                             pairs/s = 3N / (time of 4N pairs − time of N pairs): load excluded
#   train f32 / bf16          `train` with MSE on data labels, batch 64 (and bf16 at 256), no clipping
#                             (the peer clips nothing), AdamW; pairs/s of the log windows after the
#                             first (one window = one pass over the N pairs; the first is warm-up)
#   quickstart                `train recipes/quickstart.toml` wall time, CPU and GPU
# Then a table with the ratios (crossdistill / PyTorch).
#
#   scripts/cuda-check bench          on the GPU machine (unpacks the bundle, sets the libraries)
#   BIN=target/release/crossdistill DEVICE=cpu PEER_DEVICE=cpu N=256 bench/gpu.sh    dry run on a CPU
# Env: BIN (the crossdistill binary), DEVICE (default cuda), N (pairs, default 4096), PYTHON (with
# torch + transformers, default python3), PEER_GPU (default ../shared/bench/peer_gpu.py, else
# bench/peer_gpu.py if copied there), OUT (default /tmp/crossdistill-gpu-bench).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${BIN:-$root/target/release/crossdistill}"
device="${DEVICE:-cuda}"
n="${N:-4096}"
py="${PYTHON:-python3}"
out="${OUT:-/tmp/crossdistill-gpu-bench}"
peer="${PEER_GPU:-}"
if [ -z "$peer" ]; then
  for candidate in ../shared/bench/peer_gpu.py bench/peer_gpu.py; do
    [ -f "$candidate" ] && peer="$candidate" && break
  done
fi
[ -n "$peer" ] || { echo "peer_gpu.py not found: set PEER_GPU" >&2; exit 2; }
if [ "$device" = cpu ]; then export CROSSDISTILL_CPU_REDUCED_PRECISION=1; fi
mkdir -p "$out"
model="$out/minilm-shape"
"$py" bench/gpu_inputs.py "$model" "$out/pairs.jsonl" "$n"

echo "== PyTorch ($peer)"
"$py" "$peer" "$out/peer.json" "$n" 3 >"$out/peer.log" 2>&1 || { cat "$out/peer.log"; exit 1; }
cat "$out/peer.json"

echo "== crossdistill predict"
for i in 1 2 3 4; do cat "$out/pairs.jsonl"; done >"$out/pairs4.jsonl"
seconds() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>>"$out/errors.log"; python3 -c "import time; print(time.time() - $s)"; }
declare -A ours
for dtype in f32 bf16; do
  args=(predict --model "$model" --device "$device" --batch-size 64 --max-length 128 --dtype "$dtype" --activation identity)
  seconds "$bin" "${args[@]}" --input "$out/pairs.jsonl" --output "$out/p1.jsonl" >/dev/null # warm-up
  t1=$(seconds "$bin" "${args[@]}" --input "$out/pairs.jsonl" --output "$out/p1.jsonl")
  t4=$(seconds "$bin" "${args[@]}" --input "$out/pairs4.jsonl" --output "$out/p4.jsonl")
  ours[predict_$dtype]=$(python3 -c "print(3 * $n / ($t4 - $t1))")
  echo "predict $dtype: N in $t1 s, 4N in $t4 s -> ${ours[predict_$dtype]} pairs/s"
done

echo "== crossdistill train"
cat >"$out/train.toml" <<TOML
version = 1
[run]
output_dir = "$out/run"
seed = 0
device = "$device"
[student]
model = "$model"
max_length = 128
[data.train]
path = "$out/pairs.jsonl"
columns = ["query", "passage"]
[[loss]]
kind = "mse"
labels = "data"
[train]
epochs = 4
batch_size = 64
learning_rate = 1e-5
warmup_ratio = 0.0
max_grad_norm = 0.0
save_every = 0
eval_every = 0
TOML
train() { # train KEY BATCH PRECISION
  local steps=$(( (n + $2 - 1) / $2 ))
  rm -rf "$out/run"
  "$bin" train "$out/train.toml" --set "train.batch_size=$2" --set "train.log_every=$steps" \
    --set "train.precision=\"$3\"" >/dev/null 2>>"$out/errors.log"
  ours[$1]=$(python3 - "$out/run/metrics.jsonl" <<'PY'
import json, statistics, sys
rates = [r["pairs_per_s"] for r in map(json.loads, open(sys.argv[1])) if "pairs_per_s" in r]
print(statistics.median(rates[1:]) if len(rates) > 1 else rates[0])
PY
)
  echo "train $1 (batch $2, $3): ${ours[$1]} pairs/s (windows after the first)"
}
train train_fp32 64 f32
train train_bf16_amp 64 bf16
train train_bf16_amp_b256 256 bf16

echo "== quickstart wall time"
devices=(cpu); [ "$device" != cpu ] && devices+=("$device")
for d in "${devices[@]}"; do
  rm -rf "$out/quickstart-$d"
  s=$(date +%s.%N)
  "$bin" train recipes/quickstart.toml --set "run.device=$d" --set "run.output_dir=$out/quickstart-$d" >"$out/quickstart-$d.log" 2>&1
  ours[quickstart_$d]=$(python3 -c "import time; print(f'{time.time() - $s:.1f}')")
  echo "quickstart on $d: ${ours[quickstart_$d]} s; $(grep -o 'Spearman.*' "$out/quickstart-$d.log")"
done

echo
echo "| figure (pairs/s) | PyTorch | crossdistill | ratio |"
echo "| --- | --- | --- | --- |"
for key in predict_fp32:predict_f32 predict_bf16:predict_bf16 train_fp32:train_fp32 train_bf16_amp:train_bf16_amp train_bf16_amp_b256:train_bf16_amp_b256; do
  peer_key=${key%%:*}; our_key=${key##*:}
  python3 - "$out/peer.json" "$peer_key" "${ours[$our_key]}" <<'PY'
import json, sys
peer = json.load(open(sys.argv[1]))[sys.argv[2]]
ours = float(sys.argv[3])
print(f"| {sys.argv[2]} | {peer:.0f} | {ours:.0f} | {ours / peer:.2f}x |")
PY
done
echo
echo "quickstart wall time: ${ours[quickstart_cpu]} s on the CPU, ${ours[quickstart_$device]} s on $device"
