"""stpcore: spatio-temporal pruning for compressed spiking LLMs (SpikingBERT), reproduced.

The folders follow the data flow, and imports run one way (right to left):
``report -> runs -> prune -> train -> snn``.

- :mod:`stpcore.snn`: the spiking model (config, LIF, 1-bit layers, SpikingBERT, executors);
- :mod:`stpcore.train`: GLUE data, the teacher, distillation, the training loop;
- :mod:`stpcore.prune`: the paper's method (AC accounting, spatial and temporal pruning, retraining);
- :mod:`stpcore.runs`: profiles, stages and records with provenance;
- :mod:`stpcore.report`: the paper's numbers, tables, figures and the book.

Importing the package wires the layers together (:func:`register_spiking_bert`), so that a
shipped checkpoint loads with ``transformers.AutoModelForSequenceClassification.from_pretrained``.
"""
import warnings

# tqdm.auto (imported by datasets/transformers) warns in notebooks without ipywidgets.
warnings.filterwarnings("ignore", message="IProgress not found")


def register_spiking_bert() -> None:
    """Register the model type ``spiking_bert`` with transformers' ``AutoConfig`` and
    ``AutoModelForSequenceClassification``, and install the teacher package as the source of a
    packed checkpoint's word embeddings (:func:`stpcore.snn.packed.set_word_embeddings_source`).
    Run on import; idempotent."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .snn.config import SpikingBertConfig
    from .snn.model import SpikingBertForSequenceClassification
    from .snn.packed import set_word_embeddings_source
    from .train.teacher import teacher_word_embeddings

    AutoConfig.register(SpikingBertConfig.model_type, SpikingBertConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(SpikingBertConfig,
                                                SpikingBertForSequenceClassification, exist_ok=True)
    set_word_embeddings_source(teacher_word_embeddings)


register_spiking_bert()
