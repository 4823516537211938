#!/usr/bin/env bash
# One GPU session on a box without network (the `device` tool), with jobs that outlive the call.
# Measured on an H200 (2026-12-01): 4 foundation processes side by side, then 22 pruning
# processes at once ran out of GPU memory (about 10 GiB each); keep to about 12 at a time.
# Everything the jobs read or write lives under /tmp/stp, because each call re-copies the
# working tree and replaces carried folders (.whl .glue .teacher must be carried on `setup`).
#
#   scripts/gpu_session.sh setup                      wheels, data, teacher and a frozen copy of
#                                                     stpcore into /tmp/stp (STP_GIT_COMMIT=sha)
#   scripts/gpu_session.sh task TASK FOUND PRE GROUP...  in the background (setsid): the foundation
#        of seeds FOUND (e.g. 0,1) side by side, each packed to /tmp/stp/packs/TASK-seedK; then
#        the PRE stages for seed 0; then each GROUP "SEED:stage,stage,..." as its own process
#        (base seed 0). Logs: /tmp/stp/logs/TASK-*.log
#   scripts/gpu_session.sh status                     one line per log, and the records so far
#   scripts/gpu_session.sh collect                    records, packs and logs into $OUT
set -uo pipefail
S=/tmp/stp
env_setup() {
  export PYTHONPATH=/tmp/site:$S/code STP_GLUE_DIR=$S/glue STP_TEACHER_DIR=$S/teacher/minilm
  export STP_RESULTS_DIR=$S/results STP_RUNS_DIR=$S/runs STP_GIT_COMMIT=$(cat $S/commit)
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1
}
stages() {  # TASK SEED STAGES LOG (run from the frozen copy: `-m` puts the cwd first on sys.path)
  cd $S/code && python3 -m stpcore run --task "$1" --profile paper --seed "$2" --base-seed 0 --stages "$3" \
    --set progress=false >> "$4" 2>&1
}
case $1 in
setup)
  mkdir -p $S/logs $S/packs
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  rm -rf $S/code $S/glue $S/teacher && mkdir -p $S/code
  cp -r stpcore $S/code/ && cp -r .glue $S/glue && cp -r .teacher $S/teacher
  echo "${STP_GIT_COMMIT:?set STP_GIT_COMMIT}" > $S/commit
  PYTHONPATH=/tmp/site python3 -c "import torch, datasets; print(torch.__version__, torch.cuda.get_device_name())" ;;
task)
  env_setup; task=$2; found=$3; pre=$4; shift 4
  cd $S/code                    # never the working tree, which the next call replaces
  (
    for seed in ${found//,/ }; do
      ( python3 -m stpcore run --task $task --profile paper --seed $seed \
          --stages teacher,spiking_fp,baseline --set progress=false
        python3 -m stpcore pack --task $task --seed $seed --out $S/packs/$task-seed$seed \
          --teacher-dtype float16 ) > $S/logs/$task-found$seed.log 2>&1 &
    done
    wait
    stages $task 0 "$pre" $S/logs/$task-pre.log
    i=0
    for group in "$@"; do
      stages $task "${group%%:*}" "${group#*:}" $S/logs/$task-g$i.log &
      i=$((i + 1))
    done
    wait
    echo "TASK DONE $task" >> $S/logs/$task-pre.log
  ) > /dev/null 2>&1 < /dev/null &
  echo "started $task" ;;
status)
  for f in $S/logs/*.log; do echo "== $(basename $f): $(grep -v Warning $f | tail -n 1 | cut -c1-230)"; done
  find $S/results -name '*.json' | sort | sed "s|$S/results/paper/||" | tr '\n' ' '; echo
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader ;;
collect)
  tar -czf $OUT/results.tgz -C $S/results . 2>/dev/null
  tar -czf $OUT/packs.tgz -C $S/packs . 2>/dev/null
  tar -czf $OUT/logs.tgz -C $S/logs . 2>/dev/null
  ls -la $OUT ;;
*) echo "unknown command $1" >&2; exit 2 ;;
esac
