#!/usr/bin/env bash
# Score a recipe's teacher pairs on N Slurm array tasks, one shard each, then merge the shards.
#
#   sbatch --array=0-7 examples/cluster/score-slurm.sh recipes/my.toml
#   # when every task is done (or chain it: sbatch --dependency=afterok:JOBID ...):
#   crossdistill cache merge cache cache-shard-*
#
# `crossdistill score` takes its shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (and
# SLURM_ARRAY_TASK_MIN / _STEP, so --array=1-8 works too); each task writes its own cache
# directory, so the tasks never share a file. Rerunning a task resumes it from its cache.
#SBATCH --job-name=crossdistill-score
#SBATCH --cpus-per-task=16
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=score-%A_%a.log
set -euo pipefail
recipe="${1:?usage: sbatch --array=0-(N-1) score-slurm.sh RECIPE}"
index=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0}))
crossdistill score "$recipe" --set "cache.dir=cache-shard-$index"
