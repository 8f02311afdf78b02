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
# /tmp/crossdistill-overlap), ROUNDS (default 3), BASELINE (another build's binary: each round then
# times its three runs too, just before, and the summary compares both). The runs write only under $OUT. Each round times
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

seconds() { # seconds BIN NAME ARGS...: run, log to $out/NAME.log, print wall seconds
  local bin=$1 name=$2; shift 2
  local start end
  start=$(date +%s.%N)
  "$bin" "$@" >"$out/$name.log" 2>&1 || { echo "$name failed:" >&2; tail -5 "$out/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}

builds=(build)
declare -A binary=([build]="$bin")
if [ -n "${BASELINE:-}" ]; then
  builds=(baseline build)
  binary[baseline]="$BASELINE"
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for build in "${builds[@]}"; do : >"$out/rounds-$build.txt"; done
for round in $(seq "$rounds"); do
  for build in "${builds[@]}"; do
    b=${binary[$build]}
    rm -rf "$out/cache" "$out/student" "$out/e2e"
    teacher=$(seconds "$b" teacher score "$recipe" --set "cache.dir=$out/cache" "$@")
    student=$(seconds "$b" student train "$recipe" --set "cache.dir=$out/cache" \
      --set "run.output_dir=$out/student" "$@")
    e2e=$(seconds "$b" e2e train "$recipe" --set "run.output_dir=$out/e2e" "$@")
    echo "$teacher $student $e2e" >>"$out/rounds-$build.txt"
    echo "round $round ($build): teacher only $teacher s, student only $student s, end to end $e2e s"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" "${builds[@]}" <<'PY'
import json, statistics, sys
out, builds = sys.argv[1], sys.argv[2:]

def summary(build):
    rounds = [tuple(map(float, line.split())) for line in open(f"{out}/rounds-{build}.txt")]
    median = lambda xs: round(statistics.median(xs), 3)
    return {
        "rounds": [{"teacher_only_s": t, "student_only_s": s, "end_to_end_s": e,
                    "end_to_end_over_max": round(e / max(t, s), 3)} for t, s, e in rounds],
        "median_end_to_end_over_max": median([e / max(t, s) for t, s, e in rounds]),
        "median_end_to_end_over_sum": median([e / (t + s) for t, s, e in rounds]),
        "median_s": {"teacher_only": median([t for t, _, _ in rounds]),
                     "student_only": median([s for _, s, _ in rounds]),
                     "end_to_end": median([e for _, _, e in rounds])},
    }

result = summary("build")
if "baseline" in builds:
    base = summary("baseline")
    ours = [float(l.split()[2]) for l in open(f"{out}/rounds-build.txt")]
    theirs = [float(l.split()[2]) for l in open(f"{out}/rounds-baseline.txt")]
    result["baseline"] = base
    result["end_to_end_faster_than_baseline_in_rounds"] = sum(a < b for a, b in zip(ours, theirs))
print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
json.dump(result, open(f"{out}/results.json", "w"), indent=1)
PY
