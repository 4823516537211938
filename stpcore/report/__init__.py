"""Presentation: the paper's own numbers (:mod:`~stpcore.report.paper`), tables beside them
(:mod:`~stpcore.report.tables`), notebook helpers and prose (:mod:`~stpcore.report.notes`),
summaries (:mod:`~stpcore.report.summary`), intervals (:mod:`~stpcore.report.stats`,
:mod:`~stpcore.report.seeds`), the verdicts decided from them (the headline's,
:mod:`~stpcore.report.verdicts`, and every other claim's, :mod:`~stpcore.report.claims`, by the rules
of :mod:`~stpcore.report.claim_checks`)
and every pruned model's accuracy against its ACs (:mod:`~stpcore.report.tradeoff`), pruning
stages rerun with one knob changed beside the default ones (:mod:`~stpcore.report.variants`), the starting
point over seeds (:mod:`~stpcore.report.foundation`), its distillation gaps
(:mod:`~stpcore.report.gaps`) and the held-out sweep behind a schedule
(:mod:`~stpcore.report.schedules`),
evidence pages (:mod:`~stpcore.report.granularity`, :mod:`~stpcore.report.penalty`), a look at one
checkpoint's spikes (:mod:`~stpcore.report.spikes`), figures (:mod:`~stpcore.report.plots`),
benchmark tables (:mod:`~stpcore.report.benchmarks`; the integer path's
:mod:`~stpcore.report.intpath` and its products' :mod:`~stpcore.report.gemm`), the book build
(:mod:`~stpcore.report.book`) and how a notebook page is rerun (:mod:`~stpcore.report.rerun`).

May import every other folder; nothing imports it.
"""
