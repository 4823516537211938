#!/usr/bin/env bash
# Independent runs across the GPUs of one host from one command: one process per GPU
# (CUDA_VISIBLE_DEVICES), queued when there are more jobs than GPUs.
# Usage: scripts/multi_gpu.sh [-p PROFILE] [-g GPUS] [-l LOGDIR] JOB... [-- EXTRA_ARGS...]
#   JOB = TASK:SEED:STAGES   e.g.  sst2:0:all  mrpc:1:teacher,spiking_fp,baseline
#   -p PROFILE   paper (default) or smoke
#   -g GPUS      comma-separated GPU ids (default: every GPU nvidia-smi lists, else 0)
#   -l LOGDIR    one log per job, LOGDIR/TASK-seedSEED.log (default runs/multi_gpu)
#   EXTRA_ARGS   passed to every `python -m stpcore run` (e.g. --set train_limit=20000)
# Jobs that write the same task's records (same TASK, different SEED) may share a foundation
# only through --base-seed; two jobs of the same TASK and SEED must not run at once.
# Exits non-zero if any job failed; prints one line per finished job.
set -uo pipefail
profile=paper; gpus=""; logdir=runs/multi_gpu; jobs=(); extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -p) profile=$2; shift 2 ;;
    -g) gpus=$2; shift 2 ;;
    -l) logdir=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) jobs+=("$1"); shift ;;
  esac
done
[ ${#jobs[@]} -gt 0 ] || { echo "usage: $0 [-p PROFILE] [-g GPUS] TASK:SEED:STAGES ... [-- ARGS]" >&2; exit 2; }
for job in "${jobs[@]}"; do
  IFS=: read -r task seed stages rest <<<"$job"
  if [ -z "$task" ] || [ -z "$stages" ] || [ -n "$rest" ] || ! [[ "$seed" =~ ^[0-9]+$ ]]; then
    echo "bad job '$job': want TASK:SEED:STAGES (e.g. sst2:0:all)" >&2; exit 2
  fi
done
if [ -z "$gpus" ]; then
  gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, -)
  gpus=${gpus:-0}
fi
IFS=, read -ra free <<<"$gpus"
mkdir -p "$logdir"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=${TQDM_MININTERVAL:-20}
declare -A gpu_of=() name_of=()
failed=0; next=0
start_job() {   # $1 = GPU id
  local job=${jobs[$next]} task seed stages
  IFS=: read -r task seed stages <<<"$job"
  local log="$logdir/$task-seed$seed.log"
  CUDA_VISIBLE_DEVICES=$1 python -m stpcore run --task "$task" --seed "$seed" \
    --profile "$profile" --stages "$stages" "${extra[@]}" >"$log" 2>&1 &
  gpu_of[$!]=$1; name_of[$!]=$job
  echo "started $job on GPU $1 (pid $!, log $log)"
  next=$((next + 1))
}
while [ $next -lt ${#jobs[@]} ] || [ ${#gpu_of[@]} -gt 0 ]; do
  while [ $next -lt ${#jobs[@]} ] && [ ${#free[@]} -gt 0 ]; do
    start_job "${free[0]}"; free=("${free[@]:1}")
  done
  wait -n -p done_pid; rc=$?
  [ -n "${done_pid:-}" ] || continue
  echo "finished ${name_of[$done_pid]} on GPU ${gpu_of[$done_pid]}: exit $rc"
  [ $rc -eq 0 ] || failed=$((failed + 1))
  free+=("${gpu_of[$done_pid]}"); unset "gpu_of[$done_pid]" "name_of[$done_pid]"
done
echo "MULTI GPU DONE: ${#jobs[@]} jobs, $failed failed"
[ $failed -eq 0 ]
