"""The spiking model alone: :class:`~stpcore.snn.config.SpikingBertConfig`, LIF neurons
(Eq. 1-3, :mod:`~stpcore.snn.lif`) and their Triton kernels (:mod:`~stpcore.snn.kernels`), 1-bit
linear layers (:mod:`~stpcore.snn.quant`), the integer simulation path of 1-bit models
(:mod:`~stpcore.snn.integer`) and its kernels (:mod:`~stpcore.snn.int_kernels`,
:mod:`~stpcore.snn.spike_attention`), the encoder layer with its six populations
(:mod:`~stpcore.snn.layer`, :data:`~stpcore.snn.layer.POPULATIONS`), SpikingBERT with its
executors (:mod:`~stpcore.snn.model`; Eq. 4; Eq. 11, population by population, in
:mod:`~stpcore.snn.sequential`, on Bernoulli spikes from :mod:`~stpcore.snn.bernoulli`), the
checks of its inputs (:mod:`~stpcore.snn.inputs`), the weights a simulation prepares and their
cache (:mod:`~stpcore.snn.prepared`), its packed 1-bit checkpoint file
(:mod:`~stpcore.snn.packed`) and the argument checks every package shares
(:mod:`~stpcore.snn.checks`).

Imports nothing else from ``stpcore``: train, prune, runs and report build on it.
"""
