"""stpcore: spatio-temporal pruning for compressed spiking LLMs (SpikingBERT), reproduced."""
import warnings

# tqdm.auto (imported by datasets/transformers) warns in notebooks without ipywidgets.
warnings.filterwarnings("ignore", message="IProgress not found")
