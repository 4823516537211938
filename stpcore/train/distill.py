"""Knowledge-distillation losses: labels, prediction-layer KD and intermediate-layer KD.

Students learn from a fine-tuned BERT teacher (full-precision SpikingBERT) or from a
full-precision SpikingBERT (1-bit SpikingBERT), as in the public SpikingBERT code.
"""
from __future__ import annotations

import torch
from torch import nn

from .loop import is_spiking, model_inputs


def label_loss(model, batch, **kw):
    out = model(**model_inputs(batch), labels=batch["labels"], **kw)
    return out.loss, out


def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    t = temperature
    return -(torch.softmax(teacher_logits / t, -1) * torch.log_softmax(student_logits / t, -1)).sum(-1).mean()


class Distiller(nn.Module):
    """Intermediate-layer KD (hidden ASRs through a fitted projection, attention maps) and
    prediction-layer KD, from a BERT teacher or from a full-precision SpikingBERT.

    Hidden states: MSE between ``fit(a_l)`` and the mapped teacher hidden state on valid tokens
    (the embedding population imitates the embedding output). Attention: KL divergence between
    the teacher's and the student's attention distributions (rows of valid queries).

    A spiking teacher is frozen, so its prepared weights are cached while the Distiller is open
    (:meth:`stpcore.snn.model.SpikingBertModel.cache_weights`); :meth:`close`, or leaving a
    ``with Distiller(...) as kd:`` block, restores the teacher's previous caching setting."""

    def __init__(self, teacher, layer_map: list[int], student_width: int, mode: str):
        super().__init__()
        if mode not in ("intermediate", "prediction"):
            raise ValueError(f"`mode` must be 'intermediate' or 'prediction'; got {mode!r}")
        self.teacher, self.layer_map, self.mode = teacher, layer_map, mode
        width = teacher.config.hidden_size
        self.fit = nn.Linear(student_width, width) if not is_spiking(teacher) else nn.Identity()
        self._caching = None        # frozen: its weights are prepared once (stpcore.snn.prepared)
        if is_spiking(teacher):
            self._caching = teacher.spiking_bert.cache_weights()

    def close(self) -> None:
        """Restore the teacher's weight caching as it was before this Distiller (idempotent)."""
        if self._caching is not None:
            self._caching.__exit__(None, None, None)
            self._caching = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @torch.no_grad()
    def teacher_outputs(self, batch, sim_dtype):
        self.teacher.eval()
        inputs = model_inputs(batch)
        if is_spiking(self.teacher):
            out = self.teacher(**inputs, implicit=False, sim_dtype=sim_dtype)
            hidden, atts = self.teacher.spiking_bert.equilibrium(**inputs, sim=out.simulation)
            return out.logits, hidden, atts
        out = self.teacher(**inputs, output_hidden_states=True, output_attentions=True)
        return out.logits, out.hidden_states, out.attentions

    def forward(self, model, batch, sim_dtype=torch.float32, **kw):
        t_logits, t_hidden, t_atts = self.teacher_outputs(batch, sim_dtype)
        out = model(**model_inputs(batch), labels=batch["labels"], sim_dtype=sim_dtype, **kw)
        if self.mode == "prediction":
            return soft_cross_entropy(out.logits, t_logits), out
        valid = batch["attention_mask"].bool()
        loss = 0.0
        for l, h in enumerate(out.hidden_rates):
            target = t_hidden[0 if l == 0 else self.layer_map[l - 1]]
            loss = loss + nn.functional.mse_loss(self.fit(h)[valid], target.float()[valid])
        for l, p in enumerate(out.attentions):
            q = t_atts[self.layer_map[l] - 1].float().clamp_min(1e-9)
            kl = (q * (q.log() - p.float().clamp_min(1e-9).log())).sum(-1)   # [B, heads, N]
            loss = loss + kl.transpose(1, 2)[valid].mean()
        return loss, out


