#!/usr/bin/env bash
# bench/overlap.sh on 1..N cores of one machine: does the pipeline hide the teacher when the machine
# has cores the teacher alone leaves idle? Each core count runs the three timed runs (teacher only,
# student only, end to end) pinned with taskset to cores 0..n-1, with RAYON_NUM_THREADS=n (candle
# sizes its pools from physical cores, not from the affinity mask).
#
#   CORES="2 4 16" bench/overlap-cores.sh [RECIPE] [--set KEY=VALUE ...]
#
# Env: CORES (core counts, default "2 <all>"), ROUNDS, CROSSDISTILL as for bench/overlap.sh; OUT
# (default /tmp/crossdistill-overlap-cores) gets one folder per core count and summary.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-/tmp/crossdistill-overlap-cores}"
all=$(nproc --all)
mkdir -p "$out"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $all logical cores"
for n in ${CORES:-2 $all}; do
  if [ "$n" -gt "$all" ]; then
    echo "skipping $n cores: this machine has $all" >&2
    continue
  fi
  echo "== $n cores (taskset -c 0-$((n - 1)), RAYON_NUM_THREADS=$n)"
  OUT="$out/cores-$n" RAYON_NUM_THREADS=$n taskset -c "0-$((n - 1))" \
    "$root/bench/overlap.sh" "$@" | grep -E '^(round|load| "median_end)'
done
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
summary = {}
for path in sorted(out.glob("cores-*/results.json"), key=lambda p: int(p.parent.name[6:])):
    r = json.loads(path.read_text())
    summary[path.parent.name] = {
        "median_end_to_end_over_max": r["median_end_to_end_over_max"],
        "median_end_to_end_over_sum": r["median_end_to_end_over_sum"],
        "rounds": r["rounds"],
    }
print(json.dumps({k: v["median_end_to_end_over_max"] for k, v in summary.items()}))
(out / "summary.json").write_text(json.dumps(summary, indent=1))
PY
