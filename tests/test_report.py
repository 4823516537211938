"""Table builders, figures and the paper's numbers (synthetic records built here; no pipeline)."""
import pytest

from stpcore.report import plots
from stpcore.report import notes, tables
from stpcore.report.paper import PAPER_TASKS, load_paper_results


def _rec(task, stage, **metrics):
    return {"schema": 1, "profile": "test", "task": task, "stage": stage, "config": {},
            "metrics": metrics, "provenance": {"git_commit": "abc", "git_dirty": False, "device": "cpu",
                                               "torch": "x", "seed": 0, "wall_time_s": 1.0,
                                               "finished": "2025-01-01T00:00:00+00:00"}}


def _hist(n=3, layers=4, scale=1.0):
    return [{"epoch": e, "train_loss": 1.0 / (e + 1), "train_accuracy": 60 + 5 * e * scale,
             "heldout_accuracy": 55 + e, "layer_asr": [scale * (0.3 + 0.01 * l - 0.02 * e) for l in range(layers)],
             "normalized_c": scale * (0.25 - 0.01 * e)} for e in range(n)]


def test_paper_json_has_every_table_ii_row_for_five_tasks():
    p = load_paper_results()
    assert "Spatio-Temporal Pruning for Compressed Spiking Large Language Models" in p["source"]
    assert tuple(p["tasks"]) == PAPER_TASKS == ("mnli", "qqp", "qnli", "sst2", "mrpc")
    stages = [r["stage"] for r in p["table_ii"]["rows"]]
    assert stages == list(tables.TABLE_STAGES["table_ii"])
    for r in p["table_ii"]["rows"]:
        for t in PAPER_TASKS:
            assert set(r["values"][t]) == {"accuracy", "acs_percent"}
    assert p["table_ii"]["rows"][-1]["values"]["sst2"] == {"accuracy": 87.27, "acs_percent": 41.53}
    assert p["table_iii"]["values"]["qqp"]["adaptive_threshold"]["latency"] == 15.2
    for t in PAPER_TASKS:
        assert set(p["table_iii"]["values"][t]) == {"baseline", "two_stage", "adaptive_threshold"}
    assert set(p["table_i"]["values"]) == set(tables.TABLE_I_KEYS)


def test_table_ii_not_run_and_differences():
    recs = {("sst2", "two_stage"): _rec("sst2", "two_stage", dev_accuracy=88.27, acs_fraction=0.4),
            ("sst2", "baseline"): None}
    df = tables.table_ii(recs)
    assert len(df) == 9 * 5
    row = df.loc[("SST-2", "Two-Stage Pruning")]
    assert row["Acc (%) paper"] == 87.27 and row["Acc (%) ours"] == 88.27
    assert row["Acc diff"] == pytest.approx(1.0)
    assert row["ACs (%) ours"] == pytest.approx(40.0) and row["ACs diff"] == pytest.approx(40.0 - 41.53)
    base = df.loc[("SST-2", "Baseline")]
    assert base["Acc (%) ours"] == tables.NOT_RUN and base["Acc diff"] == tables.NOT_RUN
    assert df.loc[("MNLI", "Baseline")]["Acc (%) ours"] == tables.NOT_RUN   # never requested
    assert df.loc[("MNLI", "Baseline")]["Acc (%) paper"] == 75.54


def test_table_iii_iv_v():
    recs = [_rec("mrpc", "two_stage", dev_accuracy=70.0, normalized_c=0.05, mean_latency=50.0),
            _rec("sst2", "joint_retrain", dev_accuracy=85.0),
            _rec("sst2", "adaptive_threshold", dev_accuracy=86.0, mean_latency=14.04)]
    t3 = tables.table_iii(recs)
    row = t3.loc[("MRPC", "Pruned Model")]
    assert row["Accuracy diff"] == pytest.approx(70.0 - 76.12)
    assert row["Normalized #C diff"] == pytest.approx(0.007)
    assert row["Latency diff"] == pytest.approx(-4.0)
    assert t3.loc[("MRPC", "Baseline model")]["Latency ours"] == tables.NOT_RUN
    t4 = tables.table_iv(recs)
    assert t4.loc["Pruning + Joint Retraining"]["Accuracy diff"] == pytest.approx(-0.55)
    assert t4.loc["Sequential (Ours)"]["Accuracy ours"] == tables.NOT_RUN
    t5 = tables.table_v(recs)
    row = t5.loc[("Pruned", "Adaptive")]
    assert row["Timesteps diff"] == pytest.approx(1.0) and row["Accuracy diff"] == pytest.approx(-0.58)
    assert t5.loc[("Baseline", "Adaptive")]["Accuracy (%) ours"] == tables.NOT_RUN


def test_missing_metric_and_fmt_missing():
    df = tables.table_ii({("qqp", "baseline"): _rec("qqp", "baseline", dev_accuracy=80.0)})
    assert df.loc[("QQP", "Baseline")]["ACs (%) ours"] == tables.NO_METRIC
    assert tables.fmt_missing(None) == tables.NOT_RUN
    assert tables.fmt_missing(float("nan")) == tables.NOT_RUN
    assert tables.fmt_missing(1.23456) == 1.23


def test_table_i():
    cfg = {k: v["sst2"] for k, v in load_paper_results()["table_i"]["values"].items()}
    cfg["t_conv"] = 8
    df = tables.table_i({"sst2": cfg}, tasks=("sst2", "mrpc"))
    assert df.loc["T_{conv}", ("SST-2", "paper")] == "85"
    assert df.loc["T_{conv}", ("SST-2", "diff")] == "-77"
    assert df.loc["Computational Cost Penalty λ", ("SST-2", "diff")] == "0"
    assert df.loc["T_{conv}", ("MRPC", "ours")] == tables.NOT_RUN


def test_collect_records_uses_getter():
    calls = []

    def getter(task, stage, profile, seed, recompute):
        calls.append((task, stage, profile, seed, recompute))
        return None if stage == "baseline" else _rec(task, stage, dev_accuracy=1.0)

    recs = notes.collect_for("table_v", ["sst2", "mrpc"], profile="paper", getter=getter)
    assert set(recs) == {("sst2", s) for s in tables.TABLE_STAGES["table_v"]}
    assert recs[("sst2", "baseline")] is None
    assert all(c[2] == "paper" for c in calls)
    assert "Not run: sst2/baseline" in notes.run_status(recs)
    assert "records are present at seed 1. Not run" in notes.run_status(recs, 1)
    assert "present at seed" not in notes.run_status(recs)


def _figures():
    sweep_b = _rec("sst2", "budget_sweep", points=[{"budget": b, "dev_accuracy": 80 + 5 * b,
                                                     "heldout_accuracy": 79.0} for b in (0.4, 0.6, 1.0)])
    sweep_p = _rec("sst2", "base_sweep", points=[{"base": b, "acs_fraction": 1.1 - b / 2, "dev_accuracy": 85.0,
                                                   "heldout_accuracy": 84.0} for b in (1.0, 1.02, 1.2)])
    two = {"sst2": _rec("sst2", "spatial_retrain", dev_accuracy=86.0, history=_hist()),
           "mrpc": _rec("mrpc", "spatial_retrain", dev_accuracy=75.0, history=_hist())}
    rnd = {"sst2": _rec("sst2", "random_mask", dev_accuracy=80.0, post_mask_dev_accuracy=50.0,
                        history=_hist(scale=0.5)), "mrpc": None}
    return [
        lambda: plots.plot_activity_loss({"history": _hist(scale=0.7)}, {"history": _hist()}),
        lambda: plots.plot_activity_loss(None, None),
        lambda: plots.plot_budget_sweep(sweep_b, load_paper_results()),
        lambda: plots.plot_budget_sweep(None, load_paper_results()),
        lambda: plots.plot_base_sweep(sweep_p),
        lambda: plots.plot_random_mask(two, rnd, {"sst2": _rec("sst2", "spatial_fisher_asr", dev_accuracy=85.0)}),
        lambda: plots.plot_random_mask({}, {}, tasks=["sst2"]),
    ]


@pytest.mark.parametrize("make", _figures())
def test_figures_are_deterministic(make):
    from matplotlib.figure import Figure
    fig1, fig2 = make(), make()
    assert isinstance(fig1, Figure)
    assert plots.to_png(fig1) == plots.to_png(fig2)
    assert plots.to_svg(fig1) == plots.to_svg(fig2)
    assert b"Date" not in plots.to_svg(fig1)


def test_save_figure(tmp_path):
    fig = _figures()[0]()
    a = plots.save_figure(fig, tmp_path / "a.svg").read_bytes()
    b = plots.save_figure(fig, tmp_path / "b.svg").read_bytes()
    assert a == b and a.startswith(b"<?xml")


def test_every_module_is_on_the_api_page():
    """A module missing from ``API_MODULES`` breaks every cross-reference to it (the book build
    fails on warnings): each ``stpcore/<folder>/<module>.py`` must be listed."""
    from pathlib import Path
    from stpcore.report.book import API_MODULES
    root = Path(__file__).resolve().parents[1] / "stpcore"
    found = {f"stpcore.{p.parent.name}.{p.stem}" for p in root.glob("*/*.py") if p.stem != "__init__"}
    assert found - set(API_MODULES) == set()
    assert set(API_MODULES) - found == set()


def test_api_page_attribute_docs_get_no_type_from_a_colon():
    """Napoleon reads the first line of an attribute's or property's doc as ``type: text`` when
    it holds a colon outside code (``#: Things: a, b`` rendered as type "Things" on the API
    page, 20 times until this test): every such first line must keep its colons inside code."""
    import importlib
    import inspect
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring
    from sphinx.pycode import ModuleAnalyzer
    from stpcore.report.book import API_MODULES
    typed = []
    for name in API_MODULES:
        docs = {".".join(key): lines for key, lines in ModuleAnalyzer.for_module(name).find_attr_docs().items()}
        for cls in vars(importlib.import_module(name)).values():
            if inspect.isclass(cls) and cls.__module__ == name:
                docs |= {f"{cls.__name__}.{k}": inspect.getdoc(v).splitlines() for k, v in vars(cls).items()
                         if isinstance(v, property) and v.__doc__}
        for attr, lines in docs.items():
            out = GoogleDocstring(list(lines), Config(), what="attribute", name=attr).lines()
            if any(line.startswith(":type:") for line in out):
                typed.append(f"{name}.{attr}")
    assert typed == []


def test_encode_example_tokenizes_one_sentence_or_a_pair(tokenizer):
    from stpcore.report import spikes
    one = spikes.encode_example("sst2", {"sentence": "a charming journey .", "label": 1})
    assert one["tokens"][0] == "[CLS]" and one["tokens"].count("[SEP]") == 1
    assert one["input_ids"].shape == (1, len(one["tokens"])) and int(one["token_type_ids"].sum()) == 0
    pair = spikes.encode_example("mrpc", {"sentence1": "he left .", "sentence2": "he went away .", "label": 1})
    assert pair["tokens"].count("[SEP]") == 2
    assert int(pair["token_type_ids"].sum()) == len(tokenizer.tokenize("he went away .")) + 1


def test_cls_spikes_give_the_rate_the_classifier_reads(tiny_model, tiny_batch):
    import torch
    from stpcore.report import spikes
    out, cls = spikes.simulate_with_spikes(tiny_model, tiny_batch)
    assert cls.shape == (tiny_model.config.timesteps, tiny_model.config.hidden_size)
    assert set(cls.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(spikes.running_asr(cls)[-1], out.simulation.rates[-1]["output"][0, 0])
    assert "simulate_block" not in vars(tiny_model.spiking_bert.layers[-1])     # the model is unchanged
    rates = cls.mean(0)[spikes.pick_neurons(cls, 6)]
    assert len(rates) == 6 and torch.all(rates[1:] >= rates[:-1])
    table = spikes.population_rate_table(out.simulation)
    assert table.shape == (tiny_model.config.num_hidden_layers, 6)


def _sweep(task, baseline_accuracy, *points):
    """A baseline record and a lambda_sweep record of (multiplier, acs_fraction, dev_accuracy)."""
    sweep = _rec(task, "lambda_sweep", points=[
        {"multiplier": m, "acs_fraction": a, "dev_accuracy": d} for m, a, d in points])
    sweep["config"] = {"mask_lr": 0.05}
    return _rec(task, "baseline", dev_accuracy=baseline_accuracy), sweep


def test_plot_lambda_sweep_draws_changes_against_the_baseline_and_the_paper_point():
    from stpcore.report import penalty
    base, sweep = _sweep("mrpc", 70.0, (4.0, 0.30, 68.0), (0.0, 0.50, 71.0))
    fig = penalty.plot_lambda_sweep({"mrpc": sweep}, {"mrpc": base}, tasks=("sst2", "mrpc"))
    sst2_ax, mrpc_ax = fig.axes
    ours = next(l for l in mrpc_ax.lines if l.get_label() == "ours (mask_lr 0.05)")
    assert list(ours.get_xdata()) == [50.0, 30.0] and list(ours.get_ydata()) == [1.0, -2.0]
    paper = next(l for l in mrpc_ax.lines if l.get_label() == "paper, spatial retraining")
    assert paper.get_xdata()[0] == pytest.approx(33.18)                  # Table II, MRPC
    assert paper.get_ydata()[0] == pytest.approx(76.12 - 75.71)
    assert [t.get_text() for t in mrpc_ax.texts] == ["0", "4"]             # lambda multiples
    assert "not run" in [t.get_text() for t in sst2_ax.texts]             # no SST-2 sweep given


def test_lambda_sweep_reading_brackets_the_paper_point_and_names_table_i_lambda():
    from stpcore.report import penalty
    base, sweep = _sweep("mrpc", 70.0, (4.0, 0.10, 66.0), (0.0, 0.62, 70.5),   # unsorted, as a
                         (1.0, 0.25, 69.0), (0.25, 0.40, 71.0))                # record may hold them
    text = penalty.lambda_sweep_reading(sweep, base, "mrpc")
    assert "Table I's lambda keeps 25.00 % of the ACs at -1.00 pt." in text
    # Table II, MRPC: 33.18 % at 76.12 - 75.71; the nearest points above and below it
    assert "keeps 33.18 % at +0.41 pt; our points on either side of it: x0.25 (40.00 %, +1.00 pt) " \
           "and x1 (25.00 %, -1.00 pt)." in text
    assert "Without the penalty (x0) retraining keeps 62.00 % (+0.50 pt)." in text
    assert penalty.lambda_sweep_reading(None, base, "mrpc") == "MRPC: lambda sweep not run."
    assert "without a baseline record" in penalty.lambda_sweep_reading(sweep, None, "mrpc")


def test_activity_summary_gives_each_layers_relative_change_and_the_layers_lowered():
    from stpcore.report.notes import activity_summary
    hist = lambda asr, c: [{"epoch": 2, "layer_asr": asr, "normalized_c": c}]
    rec = {"metrics": {"with": {"history": hist([0.20, 0.099, 0.30], 0.18)},
                       "without": {"history": hist([0.20, 0.100, 0.40], 0.20)}}}
    text = activity_summary(rec)
    assert "ASR L1 +0.00 %, L2 -1.00 %, L3 -25.00 %; Normalized #C -10.00 %." in text
    assert text.endswith("at least 1 %: L2, L3 of 3 (one seed).")
    rec["metrics"]["without"] = {}
    assert activity_summary(rec).endswith("without the activity loss: not run.")
    assert activity_summary(None) == "Activity-loss ablation: not run."


def test_plot_lambda_sweep_draws_a_collapsed_model_at_the_floor_with_its_value():
    from stpcore.report import penalty
    base, sweep = _sweep("sst2", 80.0, (16.0, 0.004, 50.0), (1.0, 0.50, 79.0))
    ax, = penalty.plot_lambda_sweep({"sst2": sweep}, {"sst2": base}, tasks=("sst2",)).axes
    ours = next(l for l in ax.lines if l.get_label() == "ours (mask_lr 0.05)")
    assert list(ours.get_ydata()) == [-1.0, penalty.FLOOR]
    assert [t.get_text() for t in ax.texts] == ["1", "16 (-30.0)"]
    assert ax.get_ylim()[0] == penalty.FLOOR - 1


def test_plot_activity_loss_keeps_a_tiny_change_in_normalized_c_flat():
    from stpcore.report import plots
    hist = lambda c: [{"epoch": e, "layer_asr": [0.2], "normalized_c": v} for e, v in enumerate(c)]
    _, ax_b = plots.plot_activity_loss(hist([0.17775, 0.17761]), hist([0.17775, 0.17770])).axes
    lo, hi = ax_b.get_ylim()
    assert hi - lo == pytest.approx(0.02 * (lo + hi) / 2)       # 2 % of #C, not the 0.08 % spread
    _, ax_b = plots.plot_activity_loss(hist([0.30, 0.10]), None).axes
    assert ax_b.get_ylim()[0] < 0.10 and ax_b.get_ylim()[1] > 0.30   # a real change: autoscaled


def test_compare_sentence_gives_a_gap_of_percentages_in_points():
    text = notes.compare_sentence("sst2 accuracy", 79.70, 87.27, " %")
    assert text == "sst2 accuracy: paper 87.27 %, ours 79.70 % (difference -7.57 points)."
    assert notes.compare_sentence("timesteps", 43.0, 53.08).endswith("(difference -10.08).")


def test_provenance_table_shows_notes_in_full_and_times_a_re_evaluation():
    long_note = "launched with git_commit " + "7" * 40 + "; its imported source matches another commit"
    old = _rec("mrpc", "lambda_sweep")
    old["provenance"]["note"] = long_note
    again = _rec("sst2", "baseline", dev_accuracy=81.65)
    again["provenance"].update(evaluated_in="int8", wall_time_s=16.8, evaluated_from={
        "git_commit": "c650509952", "wall_time_s": 346.7, "dev_accuracy": 81.19, "dtype": "bfloat16"})
    df = notes.provenance_table([old, again])
    assert isinstance(df, notes.FullTextFrame)
    shown = long_note.replace("7" * 40, "7" * 10)                        # the commit by its first 10 digits
    assert shown in repr(df) and shown in df._repr_html_()               # not cut at 50 characters
    assert type(df[["note"]]) is not notes.FullTextFrame                 # derived frames are plain
    assert df.loc[("sst2", "baseline"), "note"] == (
        "Evaluated again in int8: the wall time is that evaluation's; trained by commit c650509 in "
        "347 s, dev acc 81.19 in bfloat16.")


def test_extra_hyperparameters_keep_small_floats_and_add_the_decisive_knobs():
    from stpcore.runs import profiles
    cfgs = {t: profiles.hyperparameters(t, "paper") for t in ("sst2", "mrpc")}
    df = notes.extra_hyperparameters(cfgs)
    assert df.loc["paper_learning_rate", "SST-2"] == "5e-10"               # not rounded to 0.0
    assert df.loc["binary_sim_dtype (1-bit models)", "SST-2"] == "int8"
    assert df.loc["mask_lr", "MRPC"] == "0.05" and df.loc["retrain_limit (examples per epoch)", "SST-2"] == 8000
    assert df.loc["λ applied (Table I's x (768 / D)^2)", "SST-2"] == "2e-11"   # 5e-12 x (768 / 384)^2
    smoke = notes.extra_hyperparameters({"sst2": profiles.hyperparameters("sst2", "smoke")})
    assert smoke.loc["binary_sim_dtype (1-bit models)", "SST-2"] == "float32"   # the smoke profile's own


def test_granularity_tables_name_their_task():
    from stpcore.report import granularity
    comps = {"embedding": 3, "layers": [[1, 2, 3, 4, 5, 6]]}
    alloc = {"layer": {"acs_fraction": 0.9, "mean_latency": 80.0},
             "sublayer": {"acs_fraction": 0.5, "mean_latency": 45.0}}
    rec = _rec("mrpc", "temporal_readings", t_conv=110,
               readings={"running/tokens": {"components": comps, "allocation": alloc}})
    assert granularity.components_table(rec).columns.name.startswith("MRPC, seed 0")
    table = granularity.allocation_table(rec)
    assert table.columns.name == "MRPC, seed 0" and "paper two_stage latency, MRPC (%)" in table.columns
    pca = _rec("mrpc", "temporal_pca", dev_accuracy=70.0, acs_fraction=0.5, mean_latency=55.0)
    pca["config"] = {"t_conv": 110}
    assert granularity.temporal_pca_table({"seed 0": pca}).loc["seed 0", "task"] == "MRPC"


def test_figure_legends_explain_their_encodings():
    fig = plots.plot_activity_loss({"history": _hist(scale=0.7)}, {"history": _hist()})
    assert "(dashed): without" in fig.axes[0].get_legend().get_title().get_text()
    two = {t: _rec(t, "spatial_retrain", dev_accuracy=80.0) for t in ("sst2", "mrpc")}
    rnd = {t: _rec(t, "random_mask", dev_accuracy=70.0, post_mask_dev_accuracy=50.0) for t in ("sst2", "mrpc")}
    masked = {t: _rec(t, "spatial_fisher_asr", dev_accuracy=75.0) for t in ("sst2", "mrpc")}
    left = plots.plot_random_mask(two, rnd, masked, tasks=["sst2", "mrpc"]).axes[0]
    markers = {l.get_label(): l.get_marker() for l in left.lines}
    assert markers["SST-2, random mask"] == "o" and markers["MRPC, random mask"] == "s"


def test_provenance_note_shortens_full_commits_and_digests():
    from stpcore.report.notes import provenance_note
    commit, digest = "735d63a41f0c50086014ca7eb4e5d1e7085a2b3c", "ab" * 32
    note = provenance_note({"note": f"launched with git_commit {commit}; source {digest}; short 735d63a stays"})
    assert note == "launched with git_commit 735d63a41f; source abababababab; short 735d63a stays".replace(
        "abababababab", digest[:10])
