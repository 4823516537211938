"""Training: GLUE data and held-out slices (:mod:`~stpcore.train.data`), the general-KD corpus
of unlabelled text (:mod:`~stpcore.train.corpus`), the BERT teacher and
student initialisation (:mod:`~stpcore.train.teacher`), knowledge-distillation losses
(:mod:`~stpcore.train.distill`), the training loop and evaluation (:mod:`~stpcore.train.loop`).

May import :mod:`stpcore.snn` only.
"""
