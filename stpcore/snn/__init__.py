"""The spiking model alone: :class:`~stpcore.snn.config.SpikingBertConfig`, LIF neurons
(Eq. 1-3, :mod:`~stpcore.snn.lif`) and their Triton kernels, 1-bit linear layers
(:mod:`~stpcore.snn.quant`) and the integer path's kernels (:mod:`~stpcore.snn.int_kernels`,
:mod:`~stpcore.snn.spike_attention`), the encoder layer with its six populations
(:data:`~stpcore.snn.layer.POPULATIONS`), SpikingBERT with its executors (Eq. 4; Eq. 11,
population by population, in :mod:`~stpcore.snn.sequential`), the weights a simulation prepares
and their cache (:mod:`~stpcore.snn.prepared`) and its packed 1-bit checkpoint file
(:mod:`~stpcore.snn.packed`).

Imports nothing else from ``stpcore``: train, prune, runs and report build on it.
"""
