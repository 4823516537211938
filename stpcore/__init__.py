"""stpcore: spatio-temporal pruning for compressed spiking LLMs (SpikingBERT), reproduced.

The folders follow the data flow, and imports run one way (right to left):
``report -> runs -> prune -> train -> snn``.

- :mod:`stpcore.snn`: the spiking model (config, LIF, 1-bit layers, SpikingBERT, executors);
- :mod:`stpcore.train`: GLUE data, the teacher, distillation, the training loop;
- :mod:`stpcore.prune`: the paper's method (AC accounting, spatial and temporal pruning, retraining);
- :mod:`stpcore.runs`: profiles, stages and records with provenance;
- :mod:`stpcore.report`: the paper's numbers, tables, figures and the book.
"""
import warnings

# tqdm.auto (imported by datasets/transformers) warns in notebooks without ipywidgets.
warnings.filterwarnings("ignore", message="IProgress not found")
