"""Experiments as stages: profiles (Table I, :mod:`~stpcore.runs.profiles`), the stage runner
with its reuse rule (:mod:`~stpcore.runs.runner`), the foundation stages
(:mod:`~stpcore.runs.foundation`), the paper's pruning experiments
(:mod:`~stpcore.runs.pruning`), result records with provenance
(:mod:`~stpcore.runs.records`), shipped checkpoints (:mod:`~stpcore.runs.checkpoints`), seeding
and the opt-in deterministic mode (:mod:`~stpcore.runs.seeding`), the choice of a training
schedule on held-out data (:mod:`~stpcore.runs.sweep`) and the validation of every parameter
before work starts (:mod:`~stpcore.runs.validate`).

May import :mod:`stpcore.prune`, :mod:`stpcore.train` and :mod:`stpcore.snn`. Importing this
package registers every stage.
"""
from . import foundation, pruning  # noqa: F401  (register the stages)
