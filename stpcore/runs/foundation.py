"""The foundation stages: teacher -> full-precision SpikingBERT -> 1-bit baseline.

With ``general_kd_epochs`` > 0 the full-precision student starts from a general-KD student
(``general_kd``: step 1 of the public SpikingBERT pipeline) instead of the teacher's layers.

The 1-bit baseline is the starting point of every pruning experiment (Tables II-V). With
``freeze_word_embeddings`` (default) the word embeddings stay at the teacher package's
pretrained values in every stage, so a shipped checkpoint restores them from the package
(:mod:`stpcore.runs.checkpoints`) instead of carrying 11.7 M numbers. Each epoch's history
row logs dev accuracy beside the held-out accuracy that chooses the epoch (never dev).
"""
from __future__ import annotations

from collections import Counter

from ..prune.acs import spiking_costs
from ..train import data as glue
from ..train.corpus import load_general_corpus
from ..train.distill import Distiller, label_loss
from ..train.loop import fit, is_spiking
from ..train.teacher import load_teacher, student_from_teacher, student_layer_map
from .runner import Run, stage


@stage("teacher")
def stage_teacher(run: Run):
    p = run.profile
    model = load_teacher(p.teacher, glue.TASKS[run.task].num_labels).to(run.device)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(not p.freeze_word_embeddings)
    history = fit(model, run.loader("train"), epochs=p.teacher_epochs, lr=p.teacher_lr,
                  loss_fn=label_loss, device=run.device, heldout_loader=run.loader("heldout"),
                  report_loader=run.loader("dev"),
                  progress=p.progress, desc="teacher")
    return {**run.dev_metrics(model), "history": history}, model


def general_kd_on(p) -> bool:
    """Whether profile ``p`` runs general KD before the full-precision student."""
    return p.general_kd_epochs > 0


def teacher_layer_map(run: Run, teacher) -> list[int]:
    """The teacher layer each student layer imitates: spaced out over a BERT teacher, one to one
    from a spiking teacher."""
    p = run.profile
    return (student_layer_map(teacher.config.num_hidden_layers, p.student_layers)
            if not is_spiking(teacher) else list(range(1, p.student_layers + 1)))


def fit_options(run: Run, **loaders) -> dict:
    """The keywords of ``fit`` that every KD phase shares, with ``loaders`` (held-out, dev)."""
    p = run.profile
    return dict(device=run.device, progress=p.progress, sim_dtype=run.sim_dtype,
                seq_len=p.max_length, costs=spiking_costs, **loaders)


def intermediate_kd(run: Run, student, teacher, loader, epochs: int, **options) -> list[dict]:
    """Intermediate-layer KD of ``student`` from ``teacher`` at ``kd_lr`` (word embeddings frozen
    as the profile says), keeping the last epoch: IKD drives hidden ASRs, not accuracy.
    ``options``: :func:`fit_options`."""
    p = run.profile
    student.spiking_bert.word_embeddings.weight.requires_grad_(not p.freeze_word_embeddings)
    with Distiller(teacher, teacher_layer_map(run, teacher), student.config.hidden_size,
                   "intermediate").to(run.device) as ikd:
        return [{"phase": "intermediate_kd", **row} for row in
                fit(student, loader, epochs=epochs, lr=p.kd_lr, loss_fn=ikd,
                    extra_modules=(ikd.fit,), select_best=False, desc="ikd", **options)]


@stage("general_kd", switch=general_kd_on)
def stage_general_kd(run: Run):
    """Intermediate-layer KD from the pre-trained (not fine-tuned) teacher over unlabelled general
    text (:func:`~stpcore.train.corpus.load_general_corpus`, never this task's dev split), for
    ``general_kd_epochs`` epochs, last epoch kept: there is no task to select on, and neither
    held-out nor dev data is read."""
    p = run.profile
    if not general_kd_on(p):
        raise ValueError("stage `general_kd` is off in this profile (`general_kd_epochs` is 0); "
                         "set `general_kd_epochs` >= 1, e.g. --set general_kd_epochs=1")
    corpus = load_general_corpus(run.tokenizer, p.max_length, p.general_kd_sources,
                                 exclude_task=run.task, limit=p.general_kd_limit,
                                 seed=run.base_seed)
    teacher = load_teacher(p.teacher, glue.TASKS[run.task].num_labels).to(run.device)
    student = student_from_teacher(teacher, p.student_layers, p.t_conv, p.initial_vth,
                                   time_chunk=p.time_chunk).to(run.device)
    loader = glue.make_loader(corpus, p.kd_batch_size, shuffle=True, seed=run.seed)
    history = [{k: v for k, v in row.items() if k != "train_accuracy"}    # labels are dummies
               for row in intermediate_kd(run, student, teacher, loader, p.general_kd_epochs,
                                          **fit_options(run))]
    return {"history": history, "corpus_examples": dict(Counter(corpus["source"]))}, student


def distill_stage(run: Run, student, teacher, ikd_epochs: int, second: str, second_epochs: int,
                  second_lr: float):
    """Intermediate-layer KD, then prediction-layer KD (``second='prediction'``) or labels."""
    p = run.profile
    common = fit_options(run, heldout_loader=run.loader("heldout"), report_loader=run.loader("dev"))
    kd_loader = run.loader("train", batch_size=p.kd_batch_size)
    hist = intermediate_kd(run, student, teacher, kd_loader, ikd_epochs, **common)
    if second == "prediction":
        loss = Distiller(teacher, teacher_layer_map(run, teacher), student.config.hidden_size,
                         "prediction")
    else:
        loss = label_loss
    try:
        hist += [{"phase": second, **row} for row in
                 fit(student, kd_loader, epochs=second_epochs, lr=second_lr, loss_fn=loss,
                     desc=second, **common)]
    finally:
        getattr(loss, "close", lambda: None)()
    return hist


@stage("spiking_fp", needs=("teacher", "general_kd"))
def stage_spiking_fp(run: Run):
    """The full-precision SpikingBERT, distilled from the fine-tuned teacher. Its pooler and
    classifier start from the teacher's; its embeddings and encoder from the teacher's layers,
    or with general KD on from the general-KD student."""
    p = run.profile
    teacher = run.model("teacher")
    student = student_from_teacher(teacher, p.student_layers, p.t_conv, p.initial_vth,
                                   time_chunk=p.time_chunk).to(run.device)
    if general_kd_on(p):
        student.spiking_bert.load_state_dict(run.model("general_kd").spiking_bert.state_dict())
    history = distill_stage(run, student, teacher, p.fp_ikd_epochs, "prediction",
                            p.fp_pred_epochs, p.pred_lr)
    return {**run.dev_metrics(student), "history": history}, student


@stage("baseline", needs=("spiking_fp",))
def stage_baseline(run: Run):
    """The 1-bit SpikingBERT: binarised encoder weights, IKD from the full-precision
    SpikingBERT, then fine-tuning on the labels."""
    p = run.profile
    fp = run.model("spiking_fp")
    student = run.model("spiking_fp")
    student.spiking_bert.set_binary_weights(True)
    history = distill_stage(run, student, fp, p.binary_ikd_epochs, "labels",
                            p.binary_ft_epochs, p.pred_lr)
    return {**run.dev_metrics(student), "history": history}, student

