#!/usr/bin/env bash
# Run pipeline stages on a GPU box that has no `datasets` and no network (the `device` tool).
# Usage: scripts/gpu_job.sh TASKS STAGES [--set k=v ...]   e.g.  scripts/gpu_job.sh sst2,mrpc teacher,spiking_fp,baseline
# Expects (carried, gitignored): .whl/ (datasets, dill, multiprocess wheels), .glue/ (GLUE parquet),
# .teacher/minilm (fp16 copy of the default teacher). Logs to runs/gpu_job.log.
set -uo pipefail
tasks=$1; stages=$2; shift 2
[ -d /tmp/site/datasets ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD STP_GLUE_DIR=$PWD/.glue STP_TEACHER_DIR=${STP_TEACHER_DIR:-$PWD/.teacher/minilm}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_MININTERVAL=20 PYTHONUNBUFFERED=1
mkdir -p runs
for task in ${tasks//,/ }; do
  python3 -m stpcore run --task "$task" --profile paper --stages "$stages" "$@" 2>&1 \
    | grep --line-buffered -v "Loading weights\|Writing model shards"
done
echo "GPU JOB DONE"
