"""Bad files (GLUE Parquet, records, packed checkpoints) and bad arguments to the Python API
(``get_profile``, ``SpikingBertConfig``, the pruning and statistics functions, the data loaders)
fail quickly, with a message naming the parameter or file, what is allowed and what was given,
and leave no file behind. Same row form and helpers as ``test_bad_inputs.py``.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, expect_rejected, expect_rejected_quickly, rows
from stpcore.prune import acs, spatial, temporal
from stpcore.report import stats
from stpcore.runs import records, runner
from stpcore.runs.checkpoints import load_checkpoint
from stpcore.runs.profiles import Profile, get_profile
from stpcore.runs.validate import parse_seeds
from stpcore.snn.config import SpikingBertConfig
from stpcore.train import data
from test_bad_inputs import BAD


def api(*args, **kwargs):
    return ("api", lambda: get_profile(*args, **kwargs))


def call(fn, *args, **kwargs):
    return ("api", lambda: fn(*args, **kwargs))


def config(**overrides):
    return call(SpikingBertConfig, **{**TINY, **overrides})


H, N = torch.rand(2, 4), torch.rand(2, 8)               # head / neuron scores and costs, 2 layers
HM, NM = torch.ones(2, 4), torch.ones(2, 8)
TRACE = torch.rand(6, 3)

API = [
    # --- get_profile and Profile ---------------------------------------------------------------
    ("api t_conv=-3", *api("paper", "sst2", t_conv=-3), "profile field `t_conv` must be an int >= 1; got -3"),
    ("api ac_budget=7", *api("paper", "sst2", ac_budget=7), "`ac_budget` must be a finite number in (0, 1]; got 7"),
    ("api train_batch_size='x'", *api("paper", "sst2", train_batch_size="x"), "`train_batch_size` must be an int >= 1; got 'x'"),
    ("api heldout_rule", *api("paper", "sst2", heldout_rule="foo"), "`heldout_rule` must be one of"),
    ("api temporal_granularity", *api("paper", "sst2", temporal_granularity="foo"), "`temporal_granularity` must be one of ['sublayer', 'layer']; got 'foo'"),
    ("api sim_dtype", *api("paper", "sst2", sim_dtype="float33"), "`sim_dtype` must be one of ['float32', 'bfloat16', 'float16']; got 'float33'"),
    ("api unknown key", *api("paper", "sst2", t_convv=8), "unknown profile override(s) ['t_convv']"),
    ("api unknown profile", *api("huge", "sst2"), "`profile` must be one of ['paper', 'smoke']; got 'huge'"),
    ("api unknown task", *api("paper", "cola"), "`task` must be one of"),
    ("api bool as int", *api("smoke", "mrpc", freeze_masks=0), "`freeze_masks` must be a bool"),
    ("api extra not dict", *api("smoke", "mrpc", extra=[1]), "`extra` must be an empty dict"),
    ("api empty sweep", *api("smoke", "mrpc", lambda_sweep=()), "`lambda_sweep` must be a non-empty tuple"),
    ("api eval_limit=1.5", *api("smoke", "mrpc", eval_limit=1.5), "`eval_limit` must be an int >= 1 or None; got 1.5"),
    ("api pca_variance=0", *api("smoke", "mrpc", pca_variance=0.0), "`pca_variance` must be a finite number in (0, 1]"),
    ("api ac_penalty_lambda<0", *api("smoke", "mrpc", ac_penalty_lambda=-1e-12), "`ac_penalty_lambda` must be a finite number >= 0"),
    ("api profile list", *api(["paper"], "sst2"), "`profile` must be one of ['paper', 'smoke']; got ['paper']"),
    ("api profile None", *api(None, "sst2"), "`profile` must be one of ['paper', 'smoke']; got None"),
    ("api profile Paper", *api("Paper", "sst2"), "`profile` must be one of ['paper', 'smoke']; got 'Paper'"),
    ("api task list", *api("paper", ["sst2"]), "`task` must be one of ['mnli', 'mrpc', 'qnli', 'qqp', 'sst2']; got ['sst2']"),
    ("api T_conv override", *api("smoke", "sst2", T_conv=8), "unknown profile override(s) ['T_conv']; allowed: ac_budget"),
    ("Profile name", "api", lambda: Profile(name="huge").validate(), "profile field `name` must be one of ['paper', 'smoke']; got 'huge'"),
    ("api teacher ./absent", *api("smoke", "sst2", teacher="./no_such_teacher"), "`teacher` must be a teacher name, a hub id or an existing folder; got './no_such_teacher'"),
    ("api teacher None", *api("smoke", "sst2", teacher=None), "`teacher` must be a non-empty string (a teacher name, hub id or folder); got None"),
    ("api teacher blank", *api("smoke", "sst2", teacher="   "), "`teacher` must be a non-empty string (a teacher name, hub id or folder); got '   '"),
    ("api max_length=1", *api("smoke", "sst2", max_length=1), "`max_length` must be an int in [8, 512]; got 1"),
    ("api freeze_word_embeddings", *api("smoke", "sst2", freeze_word_embeddings="yes"), "`freeze_word_embeddings` must be a bool (true/false); got 'yes'"),
    ("api eval_batch_size=0", *api("smoke", "sst2", eval_batch_size=0), "`eval_batch_size` must be an int >= 1; got 0"),
    ("api teacher_epochs=1.0", *api("smoke", "sst2", teacher_epochs=1.0), "`teacher_epochs` must be an int >= 1; got 1.0"),
    ("api fp_ikd_epochs=True", *api("smoke", "sst2", fp_ikd_epochs=True), "`fp_ikd_epochs` must be an int >= 1; got True"),
    ("api fp_pred_epochs=-1", *api("smoke", "sst2", fp_pred_epochs=-1), "`fp_pred_epochs` must be an int >= 1; got -1"),
    ("api binary_ikd_epochs='2'", *api("smoke", "sst2", binary_ikd_epochs="2"), "`binary_ikd_epochs` must be an int >= 1; got '2'"),
    ("api binary_ft_epochs=None", *api("smoke", "sst2", binary_ft_epochs=None), "`binary_ft_epochs` must be an int >= 1; got None"),
    ("api kd_lr=0", *api("smoke", "sst2", kd_lr=0), "`kd_lr` must be a finite number > 0; got 0"),
    ("api pred_lr=nan", *api("smoke", "sst2", pred_lr=float("nan")), "`pred_lr` must be a finite number > 0; got nan"),
    ("api retrain_epochs=0", *api("smoke", "sst2", retrain_epochs=0), "`retrain_epochs` must be an int >= 1; got 0"),
    ("api retrain_limit=0", *api("smoke", "sst2", retrain_limit=0), "`retrain_limit` must be an int >= 1 or None; got 0"),
    ("api trace_samples=2.5", *api("smoke", "sst2", trace_samples=2.5), "`trace_samples` must be an int >= 1; got 2.5"),
    ("api fisher_batch_size=[16]", *api("smoke", "sst2", fisher_batch_size=[16]), "`fisher_batch_size` must be an int >= 1; got [16]"),
    ("api retrain_lr=-inf", *api("smoke", "sst2", retrain_lr=float("-inf")), "`retrain_lr` must be a finite number > 0; got -inf"),
    ("api mask_lr=True", *api("smoke", "sst2", mask_lr=True), "`mask_lr` must be a finite number > 0; got True"),
    ("api penalty_reference_width<0", *api("smoke", "sst2", penalty_reference_width=-768), "`penalty_reference_width` must be an int >= 1 or None; got -768"),
    ("api threshold_lr='1e-3'", *api("smoke", "sst2", threshold_lr="1e-3"), "`threshold_lr` must be a finite number > 0; got '1e-3'"),
    ("api pca_every=0", *api("smoke", "sst2", pca_every=0), "`pca_every` must be an int >= 1; got 0"),
    ("api fisher_samples=inf", *api("smoke", "sst2", fisher_samples=float("inf")), "`fisher_samples` must be an int >= 1; got inf"),
    ("api activity_eta<0", *api("smoke", "sst2", activity_eta=-0.001), "`activity_eta` must be a finite number >= 0; got -0.001"),
    ("api adaptive_scale=0", *api("smoke", "sst2", adaptive_scale=0), "`adaptive_scale` must be a finite number in (0, 1]; got 0"),
    ("api paper_learning_rate=nan", *api("smoke", "sst2", paper_learning_rate=float("nan")), "`paper_learning_rate` must be a finite number >= 0; got nan"),
    ("api budget_sweep str item", *api("smoke", "sst2", budget_sweep=(0.5, "1.0")), "`budget_sweep` must be a non-empty tuple of numbers, each a finite number in (0, 1]; got (0.5, '1.0')"),
    ("api base_sweep nan item", *api("smoke", "sst2", base_sweep=(1.0, float("nan"))), "`base_sweep` must be a non-empty tuple of numbers, each a finite number >= 1; got (1.0, nan)"),
    ("api lambda_sweep<0", *api("smoke", "sst2", lambda_sweep=(-1.0,)), "`lambda_sweep` must be a non-empty tuple of numbers, each a finite number >= 0; got (-1.0,)"),
    ("api lambda_sweep str", *api("smoke", "sst2", lambda_sweep="0,1"), "`lambda_sweep` must be a non-empty tuple of numbers, each a finite number >= 0; got '0,1'"),
    ("api budget_sweep set", *api("smoke", "sst2", budget_sweep={0.5}), "`budget_sweep` must be a non-empty tuple of numbers, each a finite number in (0, 1]; got {0.5}"),
    ("api t_conv numpy float", *api("smoke", "sst2", t_conv=np.float64(8.0)), "`t_conv` must be an int >= 1; got np.float64(8.0)"),
    ("api initial_vth tensor", *api("smoke", "sst2", initial_vth=torch.tensor(1.0)), "`initial_vth` must be a finite number > 0; got tensor(1.)"),
    # --- SpikingBertConfig ---------------------------------------------------------------------
    ("config timesteps=0", *config(timesteps=0), "SpikingBertConfig: `timesteps` must be an int >= 1 (T_conv); got 0"),
    ("config timesteps='8'", *config(timesteps="8"), "`timesteps` must be an int >= 1 (T_conv); got '8'"),
    ("config timesteps=True", *config(timesteps=True), "`timesteps` must be an int >= 1 (T_conv); got True"),
    ("config threshold=0", *config(threshold=0), "`threshold` must be a float > 0 or 2 floats > 0; got [0.0, 0.0]"),
    ("config threshold=nan", *config(threshold=float("nan")), "`threshold` must be a float > 0 or 2 floats > 0; got [nan, nan]"),
    ("config threshold short", *config(threshold=[1.0]), "`threshold` must be a float > 0 or 2 floats > 0; got [1.0]"),
    ("config threshold=inf", *config(threshold=float("inf")), "`threshold` must be"),
    ("config threshold='abc'", *config(threshold="abc"), "`threshold` must be"),
    ("config leak=0", *config(leak=0), "`leak` must be in (0, 1]; got 0"),
    ("config leak=nan", *config(leak=float("nan")), "`leak` must be in (0, 1]; got nan"),
    ("config leak='1'", *config(leak="1"), "`leak` must be in (0, 1]; got '1'"),
    ("config time_chunk=0", *config(time_chunk=0), "`time_chunk` must be an int >= 1; got 0"),
    ("config layer_timesteps short", *config(layer_timesteps=[4]), "`layer_timesteps` must be None or 2 ints >= 1; got [4]"),
    ("config layer_timesteps 0", *config(layer_timesteps=[4, 0]), "`layer_timesteps` must be None or 2 ints >= 1; got [4, 0]"),
    ("config layer_timesteps 1.7", *config(layer_timesteps=[1.7, 2]), "`layer_timesteps` must be None or 2 ints >= 1; got [1.7, 2]"),
    ("config both timesteps", *config(layer_timesteps=[4, 4], population_timesteps={"embedding": 4, "layers": [[4] * 6] * 2}), "`population_timesteps` must be None when `layer_timesteps` is set"),
    ("config population embedding 0", *config(population_timesteps={"embedding": 0, "layers": [[4] * 6] * 2}), "`population_timesteps` must be None or {\"embedding\": int >= 1"),
    ("config population rows", *config(population_timesteps={"embedding": 4, "layers": [[4] * 6]}), "\"layers\": 2 lists of 6 ints >= 1}"),
    ("config population bool", *config(population_timesteps={"embedding": 4, "layers": [[4] * 5 + [True]] * 2}), "(no bools, floats or strings); got {'embedding': 4"),
    ("config heads 5", *config(num_attention_heads=5), "`hidden_size` must be divisible by num_attention_heads=5; got 16"),
    ("config layers 0", *config(num_hidden_layers=0), "`num_hidden_layers` must be an int >= 1; got 0"),
    ("config head_mask rows", *config(head_mask=[[1] * 4]), "`head_mask` must be None or 2 rows of 4 values in {0, 1}; got '1 rows'"),
    ("config head_mask value 2", *config(head_mask=[[1, 1, 1, 2]] * 2), "got [[1, 1, 1, 2], [1, 1, 1, 2]]"),
    ("config word_embeddings_source", *config(word_embeddings_source=5), "`word_embeddings_source` must be None or a model name; got 5"),
    # --- pruning, statistics, data and runner functions ------------------------------------------
    ("allocate components []", *call(temporal.allocate_timesteps, [], 1.02, 8), "allocate_timesteps: `components` must be a non-empty list of ints >= 1; got []"),
    ("allocate component 0", *call(temporal.allocate_timesteps, [1, 0], 1.02, 8), "`components` must be a non-empty list of ints >= 1; got [1, 0]"),
    ("allocate component bool", *call(temporal.allocate_timesteps, [True], 1.02, 8), "`components` must be a non-empty list of ints >= 1; got [True]"),
    ("allocate base=1", *call(temporal.allocate_timesteps, [1], 1.0, 8), "allocate_timesteps: `base` must be > 1; got 1.0"),
    ("allocate base nan", *call(temporal.allocate_timesteps, [1], float("nan"), 8), "`base` must be > 1; got nan"),
    ("allocate t_conv=8.0", *call(temporal.allocate_timesteps, [1], 1.02, 8.0), "`t_conv` must be an int >= 1; got 8.0"),
    ("allocate t_conv=True", *call(temporal.allocate_timesteps, [1], 1.02, True), "`t_conv` must be an int >= 1; got True"),
    ("components 1-D", *call(temporal.count_components, torch.ones(5)), "count_components: `traces` must be a 2-D tensor [T, F] with T >= 2 timesteps; got (5,)"),
    ("components T=1", *call(temporal.count_components, torch.ones(1, 5)), "`traces` must be a 2-D tensor [T, F] with T >= 2 timesteps; got (1, 5)"),
    ("components variance 1.5", *call(temporal.count_components, TRACE, 1.5), "count_components: `variance` must be in (0, 1]; got 1.5"),
    ("components variance True", *call(temporal.count_components, TRACE, True), "`variance` must be in (0, 1]; got True"),
    ("components nan trace", *call(temporal.count_components, TRACE * float("nan")), "count_components: `traces` must be"),
    ("prune_timesteps []", *call(temporal.prune_timesteps, [], 0.9, 1.02, 8), "prune_timesteps: `layer_traces` must be a non-empty list"),
    ("unflatten 2 values", *call(temporal.unflatten_populations, [1, 2]), "unflatten_populations: `values` must be 1 + 6 L values; got 2"),
    ("search budget 0", *call(spatial.search_mask, H, N, H, N, 0), "`budget` must be in (0, 1] (a fraction of the unpruned ACs); got 0"),
    ("search budget nan", *call(spatial.search_mask, H, N, H, N, float("nan")), "`budget` must be in (0, 1] (a fraction of the unpruned ACs); got nan"),
    ("rank budget 1.5", *call(spatial.rank_mask, H, N, H, N, 1.5), "`budget` must be in (0, 1] (a fraction of the unpruned ACs); got 1.5"),
    ("search budget '0.5'", *call(spatial.search_mask, H, N, H, N, "0.5"), "`budget` must be in (0, 1]"),
    ("search cost shape", *call(spatial.search_mask, H, N, torch.rand(2, 3), N, 0.5), "`head_cost`"),
    ("search negative cost", *call(spatial.search_mask, H, N, -H, N, 0.5), "`head_cost`"),
    ("score_units scoring", *call(spatial.score_units, H, N, H, N, "foo"), "`scoring` must be one of ('fisher', 'fisher_asr_neuron', 'fisher_asr_attn', 'fisher_asr'); got 'foo'"),
    ("count_acs num_heads 0", *call(acs.count_acs, HM, NM, [4, 4], 8, 16, 0), "count_acs: `num_heads` must be an int >= 1; got 0"),
    ("count_acs hidden 15", *call(acs.count_acs, HM, NM, [4, 4], 8, 15, 4), "`hidden_size` must be an int >= 1 divisible by num_heads=4; got 15"),
    ("count_acs seq_len 0", *call(acs.count_acs, HM, NM, [4, 4], 0, 16, 4), "`seq_len` must be an int >= 1; got 0"),
    ("count_acs head_mask 1-D", *call(acs.count_acs, torch.ones(4), NM, [4, 4], 8, 16, 4), "`head_mask` must be a 2-D tensor [L, 4]; got (4,)"),
    ("count_acs head_mask 2", *call(acs.count_acs, HM * 2, NM, [4, 4], 8, 16, 4), "`head_mask` must be valued in [0, 1]; got (2.0, 2.0)"),
    ("count_acs neuron_mask L", *call(acs.count_acs, HM, torch.ones(3, 8), [4, 4], 8, 16, 4), "`neuron_mask` must be [L, F] with the same L=2 as head_mask; got (3, 8)"),
    ("count_acs timesteps short", *call(acs.count_acs, HM, NM, [4], 8, 16, 4), "count_acs: `layer_timesteps` must be 2 numbers (one per layer)"),
    ("count_acs timesteps text", *call(acs.count_acs, HM, NM, ["a", 4], 8, 16, 4), "`layer_timesteps` must be 2 numbers (one per layer) or"),
    ("count_acs timesteps nan", *call(acs.count_acs, HM, NM, [4, float("nan")], 8, 16, 4), "`layer_timesteps` must be all >= 1"),
    ("energy negative", *call(acs.estimate_energy, -5), "estimate_energy: `acs` must be finite and >= 0; got -5.0"),
    ("bootstrap lengths", *call(stats.paired_bootstrap_ci, [1, 0, 1], [1, 0]), "`correct_a` and `correct_b` must score the same examples (equal lengths); got 3 and 2"),
    ("bootstrap value 2", *call(stats.paired_bootstrap_ci, [1, 0, 2], [1, 0, 1]), "`correct_a` must hold only 0 and 1 (correct = 1); got [2.0] at positions [2]"),
    ("bootstrap empty", *call(stats.paired_bootstrap_ci, [], []), "`correct_a` must hold at least one example"),
    ("bootstrap text", *call(stats.paired_bootstrap_ci, "abc", [1, 0, 1]), "`correct_a` must be a 1-D sequence of 0/1 (correct = 1); got str that is not numeric"),
    ("bootstrap n_boot 0", *call(stats.paired_bootstrap_ci, [1, 0], [1, 0], n_boot=0), "`n_boot` must be a positive integer; got 0"),
    ("bootstrap level 95", *call(stats.paired_bootstrap_ci, [1, 0], [1, 0], level=95), "`level` must be a number strictly between 0 and 1 (e.g. 0.95); got 95"),
    ("pooled no seeds", *call(stats.pooled_bootstrap_ci, [1, 0], []), "`correct_seeds` must hold at least one 0/1 vector (one per seed); got none"),
    ("pooled lengths", *call(stats.pooled_bootstrap_ci, [1, 0], [[1, 0], [1]]), "`correct_seeds[1]` must score the same examples as `correct_base` (equal lengths); got 1 and 2"),
    ("pooled n_boot 0", *call(stats.pooled_bootstrap_ci, [1, 0], [[1, 0]], n_boot=0), "`n_boot` must be a positive integer; got 0"),
    ("mean_ci nan", *call(stats.mean_ci, [1.0, float("nan")]), "`values` must be numbers (not NaN); got [1.0, nan]"),
    ("mean_ci text", *call(stats.mean_ci, ["a"]), "`values` must be numbers"),
    ("sampling_error n 0", *call(stats.sampling_error, 50, 0), "`n` must be a positive integer (number of examples); got 0"),
    ("sampling_error accuracy 101", *call(stats.sampling_error, 101, 10), "`accuracy` must be a percentage in [0, 100]; got 101"),
    ("load_split task list", *call(data.load_split, ["sst2"], "train"), "task=['sst2'] is not supported; allowed tasks: sst2, mrpc"),
    ("load_split split None", *call(data.load_split, "sst2", None), "split=None is not a split of task 'sst2'; allowed splits: train, validation"),
    ("load_task heldout nan", *call(data.load_task, "sst2", None, heldout_fraction=float("nan")), "fraction=nan must be a number in (0, 1)"),
    ("load_task seed -1", *call(data.load_task, "sst2", None, seed=-1), "`seed` must be an int >= 0 (at most 2**32 - 1); got -1"),
    ("load_task heldout_rule", *call(data.load_task, "sst2", None, heldout_rule=None), "heldout_rule=None is not supported; allowed: match_dev, random"),
    ("split_heldout fraction text", *call(data.split_heldout, [1, 2, 3], fraction="0.1"), "fraction='0.1' must be a number in (0, 1)"),
    ("split_heldout max_size 1.5", *call(data.split_heldout, [1, 2, 3], max_size=1.5), "max_size=1.5 must be an int >= 1"),
    ("make_loader limit True", *call(data.make_loader, [], 2, False, limit=True), "limit=True must be None or an int >= 1"),
    ("make_loader batch 1.5", *call(data.make_loader, [], 1.5, False), "batch_size=1.5 must be an int >= 1"),
    ("Run seed -1", *call(runner.Run, "sst2", "smoke", -1), "`seed` must be an int >= 0 (at most 2**32 - 1); got -1"),
    ("Run base_seed True", *call(runner.Run, "sst2", "smoke", 0, True), "`base_seed` must be an int >= 0 (at most 2**32 - 1); got True"),
    ("parse_seeds a,b", *call(parse_seeds, "--seeds", "a,b"), "`--seeds` must be comma-separated distinct ints >= 0 (e.g. 0,1,2); got 'a,b'"),
    ("parse_seeds -1", *call(parse_seeds, "--seeds", "0,-1"), "`--seeds` must be comma-separated distinct ints >= 0 (e.g. 0,1,2); got '0,-1'"),
    ("parse_seeds 1,1", *call(parse_seeds, "--seeds", "1,1"), "`--seeds` must be comma-separated distinct ints >= 0 (e.g. 0,1,2); got '1,1' (repeated)"),
    ("get_record recompute 'no'", *call(runner.get_record, "sst2", "baseline", "paper", recompute="no"), "`recompute` must be a bool"),
    ("get_record seed -1", *call(runner.get_record, "sst2", "baseline", "paper", seed=-1), "`seed` must be an int >= 0"),
]


# ---- GLUE files (a temporary STP_GLUE_DIR) ---------------------------------------------------------
WORDS = ["good", "not bad", "a truly fine film", "dull and slow", "great fun", "meh",
         "superb acting here", "boring", "long but worth it", "awful"]
GOOD = {"sst2": pd.DataFrame({"sentence": WORDS, "label": [i % 2 for i in range(10)]}),
        "mrpc": pd.DataFrame({"sentence1": WORDS, "sentence2": WORDS[::-1],
                              "label": [i % 2 for i in range(10)]}),
        "mnli": pd.DataFrame({"premise": WORDS, "hypothesis": WORDS[::-1],
                              "label": [i % 3 for i in range(10)]})}


def put(task, split, df=None, raw=None, folder=False):
    """A change to one split file of the good GLUE folder (``raw``: bytes, or a function of the
    good file's bytes; nothing: the file is removed)."""
    def apply(root):
        path = root / task / f"{split}.parquet"
        good = path.read_bytes()
        path.unlink()
        if folder:
            path.mkdir()
        elif raw is not None:
            path.write_bytes(raw(good) if callable(raw) else raw)
        elif df is not None:
            df.to_parquet(path, index=False)
    return apply


def glue_dir_is_a_file(root):
    (root.parent / "glue_file").write_text("x")
    os.environ["STP_GLUE_DIR"] = str(root.parent / "glue_file")    # the fixture's monkeypatch restores it


SST2 = {"sentence": WORDS[:4]}


def load(task):
    return lambda: data.load_task(task, tokenizer=None)       # bad data fails before tokenizing


FILES = [
    ("label column missing", put("sst2", "validation", pd.DataFrame(SST2)), ValueError, load("sst2"), "sst2/validation: the split must have the column(s) ['sentence', 'label'] (HF glue layout); missing ['label']"),
    ("text column missing", put("sst2", "train", pd.DataFrame({"text": WORDS, "label": [0] * 10})), ValueError, load("sst2"), "sst2/train: the split must have the column(s) ['sentence', 'label'] (HF glue layout); missing ['sentence']"),
    ("mrpc sentence2 missing", put("mrpc", "validation", GOOD["mrpc"].drop(columns="sentence2")), ValueError, load("mrpc"), "mrpc/validation: the split must have the column(s) ['sentence1', 'sentence2', 'label']"),
    ("label 2 in sst2", put("sst2", "validation", pd.DataFrame({**SST2, "label": [0, 2, 1, 0]})), ValueError, load("sst2"), "sst2/validation: labels must be in [0, 2); found [2] in 1 rows"),
    ("label -1 (test split)", put("sst2", "train", GOOD["sst2"].assign(label=-1)), ValueError, load("sst2"), "sst2/train: labels must be in [0, 2); found [-1] in 10 rows"),
    ("label 3 in mnli", put("mnli", "validation_mismatched", GOOD["mnli"].assign(label=3)), ValueError, load("mnli"), "mnli/validation_mismatched: labels must be in [0, 3); found [3]"),
    ("float labels", put("sst2", "validation", pd.DataFrame({**SST2, "label": [0.5, 1.0, 0.0, 1.0]})), ValueError, load("sst2"), "sst2/validation: column 'label' must hold integer label ids; got type double"),
    ("text labels", put("sst2", "validation", pd.DataFrame({**SST2, "label": ["pos", "neg"] * 2})), ValueError, load("sst2"), "sst2/validation: column 'label' must hold integer label ids; got type "),
    ("missing label", put("sst2", "train", GOOD["sst2"].assign(label=pd.array([0, None] * 5, dtype="Int64"))), ValueError, load("sst2"), "sst2/train: column 'label' must have no missing values; got 5 missing"),
    ("numbers as text", put("sst2", "validation", pd.DataFrame({"sentence": [1, 2, 3], "label": [0, 1, 0]})), ValueError, load("sst2"), "sst2/validation: column 'sentence' must hold strings; got type int64"),
    ("missing text", put("mrpc", "train", GOOD["mrpc"].assign(sentence1=[None] + WORDS[1:])), ValueError, load("mrpc"), "mrpc/train: column 'sentence1' must have no missing values; got 1 missing"),
    ("empty split", put("sst2", "validation", GOOD["sst2"].iloc[:0]), ValueError, load("sst2"), "validation.parquet' must hold at least one example; got 0 rows"),
    ("train of 1 row", put("sst2", "train", GOOD["sst2"].iloc[:1]), ValueError, load("sst2"), "sst2/train must hold at least 2 examples (the held-out slice is taken from it); got 1"),
    ("garbage bytes", put("sst2", "validation", raw=b"not a parquet file"), ValueError, load("sst2"), "validation.parquet' is not a readable Parquet file (ArrowInvalid"),
    ("zero bytes", put("sst2", "train", raw=b""), ValueError, load("sst2"), "train.parquet' is not a readable Parquet file (ArrowInvalid: Parquet file size is 0 bytes)"),
    ("truncated parquet", put("sst2", "validation", raw=lambda good: good[: len(good) // 2]), ValueError, load("sst2"), "is not a readable Parquet file"),
    ("csv named .parquet", put("sst2", "validation", raw=b"sentence,label\ngood,1\n"), ValueError, load("sst2"), "is not a readable Parquet file"),
    ("folder in place of file", put("sst2", "validation", folder=True), FileNotFoundError, load("sst2"), "sst2/validation is not in the GLUE folder: not a file"),
    ("train file missing", put("sst2", "train"), FileNotFoundError, load("sst2"), "sst2/train is not in the GLUE folder: missing file"),
    ("STP_GLUE_DIR is a file", glue_dir_is_a_file, NotADirectoryError, load("sst2"), "glue_file' (from STP_GLUE_DIR) is not a folder"),
    ("run with a bad GLUE file", put("sst2", "validation", raw=b"junk"), "cli", ["run", "--task", "sst2"], "is not a readable Parquet file"),
]


@pytest.fixture
def glue(outdirs, monkeypatch):
    """A good GLUE folder (sst2, mrpc, mnli; 10 rows a split) as STP_GLUE_DIR, read offline."""
    root = outdirs / "glue"
    for task, df in GOOD.items():
        (root / task).mkdir(parents=True)
        for split in data.TASKS[task].splits:
            df.to_parquet(root / task / f"{split}.parquet", index=False)
    monkeypatch.setenv("STP_GLUE_DIR", str(root))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(data.datasets.config, "HF_DATASETS_CACHE", outdirs / "hf_cache")
    return root


def files_under(root):
    return {p.relative_to(root).as_posix(): p.is_dir() or p.read_bytes() for p in root.rglob("*")}


def test_the_good_glue_folder_loads(glue):
    for task in GOOD:
        assert {s: len(d) for s, d in data.load_checked(task).items()} == {
            s: 10 for s in data.TASKS[task].splits}


def test_a_dev_split_of_one_length_still_splits():
    ds = data.datasets.Dataset.from_pandas(GOOD["sst2"])
    train, held = data.split_heldout(ds, 0.2, match_lengths=[3, 3, 3], text_columns=("sentence",))
    assert len(held) == 2 and set(held["sentence"]) <= {w for w in WORDS if len(w.split()) >= 3}


@pytest.mark.parametrize("label,damage,kind,what,fragment", rows(FILES))
def test_bad_glue_file_is_named_quickly_and_nothing_is_written(label, damage, kind, what, fragment,
                                                                glue, outdirs, capsys):
    damage(glue)
    before = files_under(glue)
    expect_rejected_quickly(kind, what, fragment, capsys)
    assert files_under(glue) == before
    assert not (outdirs / "results").exists() and not (outdirs / "runs").exists()


# ---- records (a temporary STP_RESULTS_DIR) -----------------------------------------------------
def record(**changes):
    rec = {"profile": "smoke", "task": "sst2", "stage": "baseline", "config": {}, "metrics": {},
           "provenance": {"seed": 0, "finished": "2026-12-01T00:00:00+00:00"}}
    return json.dumps({**rec, **changes})


READ = lambda: records.read_record("smoke", "sst2", "baseline")    # noqa: E731
RECORDS = [
    ("empty record file", "", READ, "is not a complete record (JSONDecodeError: Expecting value"),
    ("record {}", "{}", READ, "is not a complete record (missing keys ['config', 'metrics', 'provenance'])"),
    ("record []", "[]", READ, "is not a complete record (a JSON object is needed; got list)"),
    ("record null", "null", READ, "(a JSON object is needed; got NoneType)"),
    ("record NaN token", record(metrics={"dev_accuracy": "@"}).replace('"@"', "NaN"), READ, "(ValueError: NaN is not valid JSON (records are written without NaN or Infinity))"),
    ("record Infinity token", record(metrics={"wall": "@"}).replace('"@"', "-Infinity"), READ, "(ValueError: -Infinity is not valid JSON"),
    ("record config not a dict", record(config=1), READ, "(['config'] must be JSON objects)"),
    ("record of another task", record(task="mrpc"), READ, "(it is the record of task 'mrpc', not 'sst2')"),
    ("record of another seed", record(provenance={"seed": 1}), READ, "(it is the record of seed 1, not 0)"),
    ("record not UTF-8", b"\xff\xfe{", READ, "(UnicodeDecodeError: "),
    ("record is a folder", None, READ, "(unreadable: IsADirectoryError"),
    ("record listed", "{", lambda: records.list_records("smoke"), "baseline.json' is not a complete record (JSONDecodeError"),
    ("record read by choose", "{", ("cli", ["choose", "--task", "sst2", "--profile", "smoke", "--seeds", "0", "--variant", "a:results", "--out", "c.json"]),
        "baseline.json' is not a complete record"),
]


@pytest.mark.parametrize("label,content,what,fragment", rows(RECORDS))
def test_bad_record_is_named_quickly_and_nothing_is_written(label, content, what, fragment,
                                                             outdirs, capsys):
    path = records.record_path("smoke", "sst2", "baseline")
    path.parent.mkdir(parents=True)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    kind, what = what if isinstance(what, tuple) else ("api", what)
    expect_rejected_quickly(kind, what, fragment, capsys)
    assert [p for p in outdirs.rglob("*") if p.is_file()] == ([path] if content is not None else [])
    assert not (outdirs / "runs").exists()


def test_a_good_record_reads_back(outdirs):
    path = records.record_path("smoke", "sst2", "baseline", seed=2)
    path.parent.mkdir(parents=True)
    path.write_text(record(provenance={"seed": 2}))
    assert records.read_record("smoke", "sst2", "baseline", seed=2)["provenance"]["seed"] == 2
    assert len(records.list_records()) == 1


# ---- packed checkpoints ----------------------------------------------------------------------------
CHECKPOINTS = [
    ("packed weights garbage", b"not safetensors", "packed.safetensors"),
    ("packed weights empty", b"", "packed.safetensors"),
]


@pytest.mark.parametrize("label,content,fragment", rows(CHECKPOINTS))
def test_bad_packed_checkpoint_is_named(label, content, fragment, outdirs, capsys):
    folder = outdirs / "packed"
    folder.mkdir()
    (folder / "packed.safetensors").write_bytes(content)
    expect_rejected("api", lambda: load_checkpoint(folder), fragment, capsys)


# ---- the API table, and the count over both files ----------------------------------------------
@pytest.mark.parametrize("label,kind,what,fragment", rows(API))
def test_bad_argument_is_rejected_quickly_and_writes_nothing(label, kind, what, fragment, outdirs,
                                                             capsys):
    expect_rejected_quickly(kind, what, fragment, capsys)
    assert list(outdirs.rglob("*")) == []


def test_parse_seeds_passes():
    assert parse_seeds("--seeds", "0, 2,10") == (0, 2, 10)


def test_at_least_147_distinct_bad_inputs():
    ids = [r.id for table in (BAD, API, FILES, RECORDS, CHECKPOINTS) for r in rows(table)]
    assert len(ids) >= 147 and len(set(ids)) == len(ids)
