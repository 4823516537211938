"""Presentation: the paper's own numbers (:mod:`~stpcore.report.paper`), tables beside them
(:mod:`~stpcore.report.tables`), notebook helpers and prose (:mod:`~stpcore.report.notes`),
summaries (:mod:`~stpcore.report.summary`), figures (:mod:`~stpcore.report.plots`), benchmark
tables (:mod:`~stpcore.report.benchmarks`) and the book build (:mod:`~stpcore.report.book`).

May import every other folder; nothing imports it.
"""
