"""The paper's method: AC accounting (Eq. 14-21, :mod:`~stpcore.prune.acs`), post-training
spatial pruning (Eq. 5-9, :mod:`~stpcore.prune.spatial`), temporal pruning (Eq. 10,
:mod:`~stpcore.prune.temporal`) and retraining with the AC penalty and activity loss
(Eq. 12-13, :mod:`~stpcore.prune.retrain`).

May import :mod:`stpcore.train` and :mod:`stpcore.snn`.
"""
