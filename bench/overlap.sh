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
# /tmp/crossdistill-overlap), ROUNDS (default 3). The runs write only under $OUT. Each round times
# the three runs back to back; the rounds interleave them so that the machine's drift (±10% between
# minutes on the 2-core development VM) hits all three alike, and the summary is the median of the
# per-round ratios. Run it on a quiet machine and note the load average it prints.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
recipe="${1:-recipes/quickstart.toml}"
shift || true
out="${OUT:-/tmp/crossdistill-overlap}"
bin="${CROSSDISTILL:-$root/target/release/crossdistill}"
[ -x "$bin" ] || cargo build --release --bin crossdistill
rounds="${ROUNDS:-3}"
rm -rf "$out" && mkdir -p "$out"

seconds() { # seconds NAME ARGS...: run, log to $out/NAME.log, print wall seconds
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  "$bin" "$@" >"$out/$name.log" 2>&1 || { echo "$name failed:" >&2; tail -5 "$out/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$out/rounds.txt"
for round in $(seq "$rounds"); do
  rm -rf "$out/cache" "$out/student" "$out/e2e"
  teacher=$(seconds teacher score "$recipe" --set "cache.dir=$out/cache" "$@")
  student=$(seconds student train "$recipe" --set "cache.dir=$out/cache" \
    --set "run.output_dir=$out/student" "$@")
  e2e=$(seconds e2e train "$recipe" --set "run.output_dir=$out/e2e" "$@")
  echo "$teacher $student $e2e" >>"$out/rounds.txt"
  echo "round $round: teacher only $teacher s, student only $student s, end to end $e2e s"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
rounds = [tuple(map(float, line.split())) for line in open(f"{out}/rounds.txt")]
over_max = [e / max(t, s) for t, s, e in rounds]
over_sum = [e / (t + s) for t, s, e in rounds]
result = {
    "rounds": [{"teacher_only_s": t, "student_only_s": s, "end_to_end_s": e,
                "end_to_end_over_max": round(e / max(t, s), 3)} for t, s, e in rounds],
    "median_end_to_end_over_max": round(statistics.median(over_max), 3),
    "median_end_to_end_over_sum": round(statistics.median(over_sum), 3),
}
print(json.dumps(result, indent=1))
json.dump(result, open(f"{out}/results.json", "w"), indent=1)
PY
