#!/usr/bin/env bash
# Does the producer thread hide the teacher? Wall time of three runs of one recipe on the same data:
#   teacher only  `crossdistill score`  (fills a fresh score cache: every teacher forward, no training)
#   student only  `crossdistill train`  with that warm cache (every score a cache hit: no teacher work)
#   end to end    `crossdistill train`  without a cache (teacher on the producer thread, student training)
# and the ratio end-to-end / max(teacher, student) (issue #3's goal: <= 1.1 on CPU).
# `score` scores each distinct pair once, while training without a cache scores every epoch's pairs
# again: compare one-epoch runs (--set train.epochs=1).
#
#   bench/overlap.sh [RECIPE] [--set KEY=VALUE ...]     (default recipes/quickstart.toml)
#
# Env: CROSSDISTILL (binary; default target/release/crossdistill, built if missing), OUT (default
# /tmp/crossdistill-overlap). The runs write only under $OUT. Each run is timed once, in sequence,
# so run it on a quiet machine and note the load average it prints.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
recipe="${1:-recipes/quickstart.toml}"
shift || true
out="${OUT:-/tmp/crossdistill-overlap}"
bin="${CROSSDISTILL:-$root/target/release/crossdistill}"
[ -x "$bin" ] || cargo build --release --bin crossdistill
rm -rf "$out" && mkdir -p "$out"

seconds() { # seconds NAME ARGS...: run, log to $out/NAME.log, print wall seconds
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  "$bin" "$@" >"$out/$name.log" 2>&1 || { echo "$name failed:"; tail -5 "$out/$name.log"; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
teacher=$(seconds teacher score "$recipe" --set "cache.dir=$out/cache" "$@")
student=$(seconds student train "$recipe" --set "cache.dir=$out/cache" \
  --set "run.output_dir=$out/student" "$@")
e2e=$(seconds e2e train "$recipe" --set "run.output_dir=$out/e2e" "$@")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$teacher" "$student" "$e2e" "$out" <<'PY'
import json, sys
teacher, student, e2e = map(float, sys.argv[1:4])
ratio = e2e / max(teacher, student)
result = {"teacher_only_s": teacher, "student_only_s": student, "end_to_end_s": e2e,
          "sum_s": teacher + student, "end_to_end_over_max": round(ratio, 3)}
print(json.dumps(result, indent=1))
json.dump(result, open(f"{sys.argv[4]}/results.json", "w"), indent=1)
PY
