"""Command line: ``python -m stpcore run ...`` (stages), ``pack ...`` (a shipped checkpoint),
``choose ...`` (a schedule on held-out accuracy) and ``book ...`` (the book)."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["book"]:
        from .report.book import main as book_main
        return book_main(argv[1:])
    if argv[:1] == ["pack"]:
        return pack_main(argv[1:])
    if argv[:1] == ["choose"]:
        return choose_main(argv[1:])
    from .runs.runner import STAGES, SWITCHES, run_stage
    parser = argparse.ArgumentParser(prog="python -m stpcore",
                                     description="Run pipeline stages (or `pack`, `choose`, `book`: see "
                                                 "their --help).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run stages for one task and profile")
    run.add_argument("--task", required=True)
    run.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    run.add_argument("--stages", default="teacher,spiking_fp,baseline",
                     help=f"comma-separated, in order; 'all' = {','.join(STAGES)}")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--base-seed", type=int, default=None,
                     help="seed of the foundation (teacher .. baseline) that pruning starts from "
                          "(default: --seed)")
    run.add_argument("--force", action="store_true", help="recompute even if a record exists")
    run.add_argument("--with-models", action="store_true",
                     help="also keep each stage's model on disk: recompute a reused record whose "
                          "checkpoint is gone (before later stages need it side by side)")
    run.add_argument("--teacher", help="teacher: all-minilm-l6-v2 (default), a hub id, a folder")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a profile field (repeatable), e.g. --set train_limit=20000")
    sub.add_parser("book", help="execute the notebooks and build the book (see --help there)")
    sub.add_parser("pack", help="pack a trained stage as a shipped checkpoint (see --help there)")
    sub.add_parser("choose", help="choose a schedule on held-out accuracy (see --help there)")
    args = parser.parse_args(argv)
    # Everything is checked before the first stage runs: a bad input exits 2 with one message.
    from .runs.profiles import get_profile
    from .runs.validate import check_output_dirs, check_seed, check_stages, parse_set_items
    from .train.data import load_checked
    from .runs.seeding import deterministic_mode
    try:
        deterministic_mode()
        stages = check_stages(STAGES if args.stages == "all" else args.stages.split(","), STAGES)
        check_seed("--seed", args.seed)
        if args.base_seed is not None:
            check_seed("--base-seed", args.base_seed)
        overrides = {"teacher": args.teacher} if args.teacher is not None else {}
        overrides.update(parse_set_items(args.set))
        profile = get_profile(args.profile, args.task, **overrides)
        off = [s for s in stages if s in SWITCHES and not SWITCHES[s](profile)]
        if args.stages == "all":        # 'all' = every stage this profile turns on
            stages = [s for s in stages if s not in off]
        elif off:
            raise ValueError(f"`--stages` names {off}, which this profile turns off (e.g. "
                             f"`general_kd` needs `--set general_kd_epochs=1` or more)")
        check_output_dirs()
        load_checked(args.task)         # the GLUE splits are readable and well formed (no tokenising)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    distributed = _init_distributed()
    try:
        for name in stages:
            rec = run_stage(args.task, name, args.profile, args.seed, force=args.force,
                            base_seed=args.base_seed, with_model=args.with_models, **overrides)
            shown = {k: v for k, v in rec["metrics"].items()
                     if not isinstance(v, (list, dict, str))}
            if _rank() == 0:
                print(f"{args.task} {name}: {json.dumps(shown)} "
                      f"({rec['provenance']['wall_time_s']:.0f} s, {rec['provenance']['device']})",
                      flush=True)
    finally:
        if distributed:
            import torch.distributed as dist
            dist.destroy_process_group()
    return 0


def _rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_initialized() else 0


def _init_distributed() -> bool:
    """Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1): join the process group
    (nccl on CUDA, each rank on ``cuda:LOCAL_RANK``; gloo on CPU) and return True (the caller
    destroys the group at the end). Training
    then averages gradients over the ranks and only rank 0 writes records and checkpoints
    (:func:`stpcore.train.loop.fit`, :meth:`stpcore.runs.runner.Run.record`)."""
    import os
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return False
    import torch
    import torch.distributed as dist
    if dist.is_initialized():            # someone else owns the group (and tears it down)
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")
    return True


def pack_main(argv) -> int:
    """``python -m stpcore pack``: a trained stage's model as a shipped checkpoint, evaluated
    back after unpacking (fp32 dev predictions stored in its record.json as ``packed_eval``)."""
    import torch
    from .runs.checkpoints import load_checkpoint, pack_checkpoint
    from .runs.records import atomic_write_json, read_record, record_path
    from .runs.runner import STAGES, Run
    parser = argparse.ArgumentParser(prog="python -m stpcore pack")
    parser.add_argument("--task", required=True)
    parser.add_argument("--profile", default="paper", choices=["smoke", "paper"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", default="baseline")
    parser.add_argument("--out", required=True)
    parser.add_argument("--teacher-dtype", default="float32", choices=["float32", "float16"],
                        help="dtype of the teacher copy the model was trained from")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="the profile overrides the stage was trained with")
    args = parser.parse_args(argv)
    from .runs.profiles import get_profile
    from .runs.validate import check_seed, parse_set_items
    try:
        check_seed("--seed", args.seed)
        overrides = parse_set_items(args.set)
        get_profile(args.profile, args.task, **overrides)
        spiking = [s for s in STAGES if s != "teacher"]
        if args.stage not in spiking:
            raise ValueError(f"`--stage` must be one of {spiking} (a spiking stage); "
                             f"got {args.stage!r}")
        path = record_path(args.profile, args.task, args.stage, seed=args.seed)
        rec = read_record(args.profile, args.task, args.stage, seed=args.seed)
        if rec is None:
            raise ValueError(f"`--stage` {args.stage!r} has no record for task {args.task!r}, "
                             f"profile {args.profile!r}, seed {args.seed} (no {str(path)!r}); "
                             f"run that stage first (python -m stpcore run --stages ...)")
        if not rec["provenance"].get("checkpoint_sha256"):
            raise ValueError(f"`--stage` {args.stage!r} saved no model (its record {str(path)!r} "
                             f"names no checkpoint); pack a stage that trains one, e.g. baseline")
    except ValueError as exc:
        parser.error(str(exc))
    run = Run(args.task, args.profile, args.seed, **overrides)
    rec = run.record(args.stage)
    out = pack_checkpoint(run.model(args.stage), args.out, rec, args.teacher_dtype)
    packed = load_checkpoint(out).to(run.device)
    m = run.dev_metrics(packed, torch.float32)
    rec["packed_eval"] = {"sim_dtype": "float32", "dev_accuracy": m["dev_accuracy"],
                          "dev_predictions": m["dev_predictions"]}
    atomic_write_json(out / "record.json", rec)
    print(f"packed {args.task} {args.stage} seed {args.seed} -> {out}: fp32 dev accuracy "
          f"{m['dev_accuracy']:.2f} (record {rec['metrics']['dev_accuracy']:.2f})", flush=True)
    return 0


def choose_main(argv) -> int:
    """``python -m stpcore choose``: the schedule with the best mean held-out accuracy among
    variants trained into separate results roots; prints its name, writes the comparison."""
    from .runs.profiles import get_profile
    from .runs.records import atomic_write_json
    from .runs.sweep import choose_variant, parse_variant
    from .runs.validate import parse_seeds, parse_set_items
    parser = argparse.ArgumentParser(prog="python -m stpcore choose")
    parser.add_argument("--task", required=True)
    parser.add_argument("--profile", default="paper", choices=["smoke", "paper"])
    parser.add_argument("--stage", default="baseline")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variant", action="append", required=True,
                        metavar="NAME:ROOT[:key=value,...]")
    parser.add_argument("--out", required=True, help="JSON file for the comparison")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds("--seeds", args.seeds)
        variants = {}
        for text in args.variant:
            name, root, raw = parse_variant(text)
            if name in variants:
                raise ValueError(f"`--variant` names must be distinct; got {name!r} twice")
            overrides = parse_set_items([f"{k}={v}" for k, v in raw.items()], flag="--variant")
            get_profile(args.profile, args.task, **overrides)
            variants[name] = (root, overrides)
        summary = choose_variant(variants, args.task, args.stage, seeds, args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    atomic_write_json(args.out, summary)
    print(summary["chosen"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
