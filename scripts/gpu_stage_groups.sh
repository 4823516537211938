#!/usr/bin/env bash
# Run stage groups of one task on one GPU: the first group alone, then the others concurrently
# (the simulation is launch-bound, so a few processes share one GPU well). Each group is a
# comma-separated stage list for scripts/gpu_job.sh; its log is runs/<task>-<i>.log.
# Usage: scripts/gpu_stage_groups.sh TASK FIRST_GROUP [GROUP ...]
# e.g.   scripts/gpu_stage_groups.sh mrpc teacher,spiking_fp,baseline,spatial_fisher_asr,temporal_pca \
#          spatial_retrain,two_stage,adaptive_threshold spatial_fisher,joint_retrain
set -uo pipefail
task=$1; first=$2; shift 2
job=$(dirname "$0")/gpu_job.sh
mkdir -p runs
"$job" "$task" "$first" > "runs/$task-0.log" 2>&1
i=1
for group in "$@"; do
  "$job" "$task" "$group" > "runs/$task-$i.log" 2>&1 &
  i=$((i + 1))
done
wait
echo "GROUPS DONE $task"
