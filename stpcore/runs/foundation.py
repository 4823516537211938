"""The foundation stages: teacher -> full-precision SpikingBERT -> 1-bit baseline.

The 1-bit baseline is the starting point of every pruning experiment (Tables II-V). With
``freeze_word_embeddings`` (default) the word embeddings stay at the teacher package's
pretrained values in every stage, so a shipped checkpoint restores them from the package
(:mod:`stpcore.runs.checkpoints`) instead of carrying 11.7 M numbers. Each epoch's history
row logs dev accuracy beside the held-out accuracy that chooses the epoch (never dev).
"""
from __future__ import annotations

from ..prune.acs import spiking_costs
from ..train import data as glue
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


def distill_stage(run: Run, student, teacher, ikd_epochs: int, second: str, second_epochs: int,
                  second_lr: float):
    """Intermediate-layer KD, then prediction-layer KD (``second='prediction'``) or labels."""
    p = run.profile
    layer_map = (student_layer_map(teacher.config.num_hidden_layers, p.student_layers)
                 if not is_spiking(teacher) else list(range(1, p.student_layers + 1)))
    student.spiking_bert.word_embeddings.weight.requires_grad_(not p.freeze_word_embeddings)
    common = dict(device=run.device, heldout_loader=run.loader("heldout"), progress=p.progress,
                  report_loader=run.loader("dev"),
                  sim_dtype=run.sim_dtype, seq_len=p.max_length, costs=spiking_costs)
    kd_loader = run.loader("train", batch_size=p.kd_batch_size)
    ikd = Distiller(teacher, layer_map, student.config.hidden_size, "intermediate").to(run.device)
    # IKD drives hidden ASRs, not accuracy: keep its last epoch rather than select on accuracy
    hist = [{"phase": "intermediate_kd", **row} for row in
            fit(student, kd_loader, epochs=ikd_epochs, lr=p.kd_lr, loss_fn=ikd,
                extra_modules=(ikd.fit,), select_best=False, desc="ikd", **common)]
    if second == "prediction":
        loss = Distiller(teacher, layer_map, student.config.hidden_size, "prediction")
    else:
        loss = label_loss
    hist += [{"phase": second, **row} for row in
             fit(student, kd_loader, epochs=second_epochs, lr=second_lr, loss_fn=loss,
                 desc=second, **common)]
    return hist


@stage("spiking_fp", needs=("teacher",))
def stage_spiking_fp(run: Run):
    p = run.profile
    teacher = run.model("teacher")
    student = student_from_teacher(teacher, p.student_layers, p.t_conv, p.initial_vth,
                                   time_chunk=p.time_chunk).to(run.device)
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

