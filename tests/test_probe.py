"""Layer-wise probing: synthetic probes, the NC score by hand, the feature cache, MiniLM on CoLA,
probes around a training run, and the probe-vs-reinit Spearman correlation."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from reinitlab.data.tasks import load_task
from reinitlab.errors import ReinitlabError
from reinitlab.paths import config_dir
from reinitlab.probing import (
    bin_regression_labels,
    nc_variability,
    probe_reinit_spearman,
    reinit_curve,
)
from reinitlab.probing.linear import fit_probe, probe_layers, score
from reinitlab.probing.variability import class_covariances, layer_variability
from tests.helpers import GLUE, compose_cfg, needs_glue

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------- synthetic probes and NC


def synthetic_layers(labels: np.ndarray, informative: int, signal: np.ndarray, rng, layers=5):
    """[layers, n, d] features: layer `informative` is a linear function of the label (plus a
    little noise): `signal[label]` (a class mean per class) for classification, `label·signal`
    for regression; every other layer is pure noise."""
    n, d = len(labels), signal.shape[-1]
    feats = rng.normal(size=(layers, n, d))
    clean = np.outer(labels, signal) if signal.ndim == 1 else signal[labels]
    feats[informative] = 0.3 * rng.normal(size=(n, d)) + clean
    return feats


@pytest.mark.parametrize("task_name", ["cola", "mnli", "stsb"])
def test_probe_finds_the_layer_that_carries_the_label(task_name):
    task = load_task(task_name)
    rng = np.random.default_rng(0)
    if task.is_regression:
        y_train, y_dev = rng.uniform(0, 5, 300), rng.uniform(0, 5, 200)
    else:
        y_train = rng.integers(0, task.num_labels, 300)
        y_dev = rng.integers(0, task.num_labels, 200)
    informative = 3
    signal = rng.normal(size=12 if task.is_regression else (task.num_labels, 12))
    train = synthetic_layers(y_train, informative, signal, rng)
    dev = synthetic_layers(y_dev, informative, signal, rng)
    results = probe_layers(task, train, y_train, dev, y_dev, seed=0)
    metric = [r.primary for r in results]
    assert int(np.argmax(metric)) == informative
    assert metric[informative] > 0.9
    assert all(m < 0.5 for i, m in enumerate(metric) if i != informative)  # chance level
    assert set(results[0].metrics) == set(task.metrics)
    variability = layer_variability(train, y_train, regression=task.is_regression)
    assert int(np.argmin(variability)) == informative
    # binned STS-B: bin means lie on one line, so the noise in the other between-bin
    # directions inflates NC (see reinitlab.probing.variability); the layer is still lowest
    ratio = 0.7 if task.is_regression else 0.1
    assert variability[informative] < ratio * min(
        v for i, v in enumerate(variability) if i != informative
    )


def test_probe_metric_is_the_projects_glue_metric():
    """A probe's dev score is exactly reinitlab.training.metrics on its predictions (sklearn agrees)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import matthews_corrcoef

    task = load_task("cola")
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 6)) + y[:, None] * 0.8
    y_dev = rng.integers(0, 2, 100)
    x_dev = rng.normal(size=(100, 6)) + y_dev[:, None] * 0.8
    res = fit_probe(task, x, y, x_dev, y_dev, seed=0, grid=[1.0])
    mean, std = x.mean(0), x.std(0)
    est = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit((x - mean) / std, y)
    pred = est.predict((x_dev - mean) / std)
    assert res.regularisation == 1.0
    assert res.primary == pytest.approx(matthews_corrcoef(y_dev, pred), abs=1e-6)
    assert score(task, np.eye(2)[pred], y_dev)["mcc"] == pytest.approx(res.primary, abs=1e-6)


def test_nc_matches_a_hand_computation():
    # class A: (2,1), (0,-1) -> mean (1,0); class B: (0,1), (-2,-1) -> mean (-1,0); global (0,0)
    # Σ_W = 1/4 · 4·[[1,1],[1,1]] = [[1,1],[1,1]];  Σ_B = 1/2 ([[1,0],[0,0]]·2) = [[1,0],[0,0]]
    # Σ_B⁺ = [[1,0],[0,0]];  tr(Σ_W Σ_B⁺) = 1;  NC = 1/K · 1 = 0.5
    h = np.array([[2.0, 1.0], [0.0, -1.0], [0.0, 1.0], [-2.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    sigma_w, sigma_b, k = class_covariances(h, y)
    np.testing.assert_allclose(sigma_w, [[1, 1], [1, 1]])
    np.testing.assert_allclose(sigma_b, [[1, 0], [0, 0]])
    assert k == 2
    assert nc_variability(h, y) == pytest.approx(0.5)
    # scaled features, same NC; class means pulled twice as far apart along x: Σ_B ×4, NC /4
    assert nc_variability(10 * h, y) == pytest.approx(0.5)
    far = h + np.array([[1.0, 0], [1.0, 0], [-1.0, 0], [-1.0, 0]])
    assert nc_variability(far, y) == pytest.approx(0.5 / 4)


def test_nc_matches_the_formula_with_numpy_pinv_on_random_data():
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1, 2], [40, 25, 35])  # unequal class sizes
    h = rng.normal(size=(100, 8)) + np.eye(8)[y] * 2.0
    means = np.stack([h[y == c].mean(0) for c in range(3)])
    dev = h - means[y]
    sigma_w = dev.T @ dev / 100
    cen = means - h.mean(0)
    sigma_b = cen.T @ cen / 3
    expected = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / 3
    assert nc_variability(h, y) == pytest.approx(expected, rel=1e-8)


def test_nc_bad_input_and_degenerate_cases():
    with pytest.raises(ReinitlabError, match="at least two classes"):
        nc_variability(np.ones((4, 2)), np.zeros(4))
    assert math.isinf(nc_variability(np.ones((4, 2)), np.array([0, 0, 1, 1])))


def test_stsb_scores_are_binned_into_five_unit_bins():
    scores = [0.0, 0.99, 1.0, 2.5, 3.999, 4.0, 4.99, 5.0]
    assert bin_regression_labels(scores).tolist() == [0, 0, 1, 2, 3, 4, 4, 4]


# ---------------------------------------------------------------- probe vs reinit correlation


def test_spearman_between_probe_metric_and_reinit_drop():
    # layers 1..4 probe better and better; re-initializing from a deeper layer costs less
    probe = {"embeddings": 0.0, "layer_01": 0.1, "layer_02": 0.2, "layer_03": 0.3, "layer_04": 0.4}
    curve = {1: 0.2, 2: 0.3, 3: 0.5, 4: 0.6, 5: 0.7}  # k=5 = L+1: the baseline, ignored
    out = probe_reinit_spearman(probe, curve, baseline=0.7)
    assert out["layers"] == [1, 2, 3, 4] and out["n"] == 4
    assert out["drop"] == pytest.approx([0.5, 0.4, 0.2, 0.1])
    assert out["rho"] == pytest.approx(-1.0)
    # a list in probe-result order (index 0 = embeddings), and agreement with scipy directly
    from scipy.stats import spearmanr

    metric = [0.9, 0.3, 0.1, 0.4, 0.2]
    curve = {1: 0.5, 2: 0.45, 3: 0.65, 4: 0.6}
    out = probe_reinit_spearman(metric, curve, baseline=0.7)
    ref = spearmanr([0.3, 0.1, 0.4, 0.2], [0.2, 0.25, 0.05, 0.1])
    assert out["rho"] == pytest.approx(ref.statistic) and out["pvalue"] == pytest.approx(ref.pvalue)
    # too few layers or a constant side: no correlation, reported as NaN
    assert math.isnan(probe_reinit_spearman([0, 0.1, 0.2], {1: 0.1, 2: 0.2}, 0.5)["rho"])
    assert math.isnan(probe_reinit_spearman([0, 1, 1, 1], {1: 0.1, 2: 0.2, 3: 0.3}, 0.5)["rho"])
    with pytest.raises(ReinitlabError, match="unknown layer name"):
        probe_reinit_spearman({"pooler": 0.1}, {1: 0.1}, 0.5)


def test_reinit_curve_from_result_records():
    def rec(k, value, name="progressive", seed=0):
        return {
            "task": "cola",
            "model": "tiny",
            "num_layers": 3,
            "scheme": {"name": name, "k": k, "pooler": False},
            "seed": seed,
            "best": {"metrics": {"val/primary": value}},
        }

    records = [rec(1, 0.1), rec(1, 0.3, seed=1), rec(2, 0.4), rec(3, 0.5), rec(4, 0.6)]
    records += [rec(None, 0.62, seed=1), rec(None, 0.7, name="none", seed=2)]
    curve, baseline = reinit_curve(records)
    assert curve == pytest.approx({1: 0.2, 2: 0.4, 3: 0.5})
    assert baseline == pytest.approx((0.6 + 0.62 + 0.7) / 3)
    out = probe_reinit_spearman([0.0, 0.3, 0.2, 0.1], curve, baseline)
    assert out["layers"] == [1, 2, 3] and out["rho"] == pytest.approx(1.0)
    with pytest.raises(ReinitlabError, match="no baseline"):
        reinit_curve(records[:4])
    with pytest.raises(ReinitlabError, match="mix tasks"):
        reinit_curve([*records, {**rec(2, 0.1), "task": "rte"}])


def test_reinit_curve_takes_only_its_own_runs_and_true_baselines():
    """A study mixing schemes: heads, layers and block runs are no baselines, mode=zero and
    parts runs no points of the reinit curve; values chosen so each mix-up shows."""

    def rec(value, seed=0, **scheme):
        return {
            "task": "cola",
            "model": "tiny",
            "num_layers": 3,
            "scheme": {"pooler": False, "label": "x", **scheme},
            "seed": seed,
            "best": {"metrics": {"val/primary": value}},
        }

    records = [
        # true baselines: nothing reset (k unset, k = L+1 in either mode, reinit=none)
        rec(0.58, name="progressive", k=None, mode="reinit", label="baseline"),
        rec(0.60, seed=1, name="progressive", k=4, mode="zero", label="baseline"),
        rec(0.62, seed=2, name="none", label="baseline"),
        # the plain reinit curve
        rec(0.2, name="progressive", k=1, mode="reinit"),
        rec(0.3, seed=1, name="progressive", k=1, mode="reinit"),
        rec(0.4, name="progressive", k=2, mode="reinit"),
        rec(0.5, name="progressive", k=3, mode="reinit"),
        # other progressive figures: zeroed layers, one part, the pooler too
        rec(0.0, name="progressive", k=1, mode="zero"),
        rec(0.05, name="progressive", k=2, mode="zero"),
        rec(0.45, name="progressive", k=2, mode="reinit", parts=["attention"]),
        rec(0.1, name="progressive", k=3, mode="reinit", pooler=True),
        # other schemes: each resets something, so none of them is a baseline
        rec(0.1, name="heads", layer=1, head=1, mode="reinit"),
        rec(0.0, name="heads", layer=2, head=1, mode="mask"),
        rec(0.2, name="layers", layers=[2], mode="reinit"),
        rec(0.0, name="block", start=1, width=2, mode="reinit"),
        rec(0.9, name="none", pooler=True),  # the pooler alone: a variant, not a baseline
    ]
    curve, baseline = reinit_curve(records)
    assert curve == pytest.approx({1: (0.2 + 0.3) / 2, 2: 0.4, 3: 0.5})
    assert baseline == pytest.approx((0.58 + 0.60 + 0.62) / 3)  # 0.6
    zero, zero_base = reinit_curve(records, figure="progressive zero")
    assert zero == pytest.approx({1: 0.0, 2: 0.05}) and zero_base == pytest.approx(0.6)
    parts, _ = reinit_curve(records, figure="progressive [attention]")
    assert parts == pytest.approx({2: 0.45})
    # the drop the Spearman correlation ranks is measured from the true baseline
    out = probe_reinit_spearman([0.0, 0.3, 0.2, 0.1], curve, baseline)
    assert out["drop"] == pytest.approx([0.35, 0.2, 0.1])
    with pytest.raises(ReinitlabError, match="figure='heads'.*progressive"):
        reinit_curve(records, figure="heads")
    with pytest.raises(ReinitlabError, match="no baseline"):
        reinit_curve([r for r in records if r["scheme"]["label"] != "baseline"])


# ---------------------------------------------------------------- features and their cache


@pytest.fixture(scope="module")
def tiny_model_and_data():
    from reinitlab.data.glue_io import Examples
    from reinitlab.data.tokenized import PadCollator, TokenizedDataset, tokenize
    from reinitlab.training.models import load_model, load_tokenizer

    spec = OmegaConf.load(config_dir() / "model" / "tiny.yaml")
    task = load_task("cola")
    model = load_model(spec, task, head_seed=0)
    tok = load_tokenizer(spec)
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away", "quickly"]
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 12))) for _ in range(40)]
    examples = Examples(texts, None, [i % 2 for i in range(40)])
    data = TokenizedDataset(tokenize(examples, tok, 32))
    return model, data, PadCollator(tok.pad_token_id)


def test_features_are_the_hidden_states_pooled_over_real_tokens(tiny_model_and_data):
    from torch.utils.data import DataLoader

    from reinitlab.probing.features import extract_features

    model, data, collate = tiny_model_and_data
    feats, labels = extract_features(model, DataLoader(data, batch_size=8, collate_fn=collate))
    assert feats["cls"].shape == (4, 40, 32) and labels.tolist() == data.labels.tolist()
    model.eval()
    for i in (0, 7, 33):  # each example alone, unpadded
        ids = data[i]["input_ids"].long()[None]
        with torch.no_grad():
            hs = model.bert(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in range(4):
            torch.testing.assert_close(feats["cls"][layer, i], hs[layer][0, 0])
            torch.testing.assert_close(feats["mean"][layer, i], hs[layer][0].mean(0))


def test_features_are_extracted_once_per_model_state(tiny_model_and_data, tmp_path, monkeypatch):
    import copy

    from torch.utils.data import DataLoader

    import reinitlab.probing.features as features

    model, data, collate = tiny_model_and_data
    calls = []
    real = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda *a: calls.append(1) or real(*a))
    loader = DataLoader(data, batch_size=16, collate_fn=collate)
    key = {"task": "cola", "split": "train"}
    first = features.cached_features(model, loader, "mean", tmp_path, key)
    second = features.cached_features(model, loader, "mean", tmp_path, key)
    other_pooling = features.cached_features(model, loader, "cls", tmp_path, key)
    assert (first.cache_hit, second.cache_hit, other_pooling.cache_hit) == (False, True, True)
    assert len(calls) == 1 and second.path.is_file()
    assert torch.equal(first.features, second.features)
    assert first.layer_names == ["embeddings", "layer_01", "layer_02", "layer_03"]
    # another head does not change hidden states: still a hit; a changed encoder weight: a miss
    other_head = copy.deepcopy(model)
    other_head.classifier.weight.data.add_(1.0)
    assert features.cached_features(other_head, loader, "mean", tmp_path, key).cache_hit
    changed = copy.deepcopy(model)
    changed.bert.encoder.layer[2].output.dense.bias.data.add_(0.1)
    moved = features.cached_features(changed, loader, "mean", tmp_path, key)
    assert not moved.cache_hit and len(calls) == 2
    torch.testing.assert_close(moved.features[:3], first.features[:3])  # layers below: same
    assert not torch.allclose(moved.features[3], first.features[3])
    # another split key or another subset of the data: a miss
    assert not features.cached_features(
        model, loader, "mean", tmp_path, {**key, "split": "x"}
    ).cache_hit
    half = DataLoader(torch.utils.data.Subset(data, range(20)), batch_size=16, collate_fn=collate)
    assert not features.cached_features(model, half, "mean", tmp_path, key).cache_hit
    assert len(calls) == 4
    with pytest.raises(ReinitlabError, match="probe.pooling='max'"):
        features.cached_features(model, loader, "max", tmp_path, key)


def test_head_masks_key_the_feature_cache_and_never_share_an_entry(
    tiny_model_and_data, tmp_path, monkeypatch, capsys
):
    """mode=mask changes hidden states through hooks, not weights: a masked model and its
    unmasked twin (same weights) each get their own, correct features, whichever runs first."""
    import copy

    from torch.utils.data import DataLoader

    import reinitlab.probing.features as features
    from reinitlab.reinit.adapters import EncoderAdapter
    from reinitlab.reinit.masking import install_head_masks, remove_head_mask

    model, data, collate = tiny_model_and_data
    loader = DataLoader(data, batch_size=16, collate_fn=collate)
    plain = copy.deepcopy(model)
    masked = copy.deepcopy(model)
    install_head_masks(masked, [(1, 0), (1, 1)])  # encoder layer 2 (0-based 1), heads 1 and 2
    fresh_plain = features.extract_features(plain, loader)[0]["mean"]
    fresh_masked = features.extract_features(masked, loader)[0]["mean"]
    # the mask changes layer 2 and above by a real amount, and nothing below it
    torch.testing.assert_close(fresh_masked[:2], fresh_plain[:2], rtol=0, atol=0)
    assert (fresh_masked[2:] - fresh_plain[2:]).abs().amax(dim=(1, 2)).min() > 1e-2

    calls = []
    real = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda *a: calls.append(1) or real(*a))
    key = {"task": "cola", "split": "train"}
    cache = tmp_path / "cache"

    def probe(m):
        return features.cached_features(m, loader, "mean", cache, key, verbose=False)

    def written():
        return sorted((cache / "features").glob("*.pt"))

    first_masked = probe(masked)  # the masked run first: it must not be read by the baseline
    assert not first_masked.cache_hit and len(calls) == 1 and len(written()) == 2
    first_plain = probe(plain)
    assert not first_plain.cache_hit and len(calls) == 2 and len(written()) == 4
    torch.testing.assert_close(first_masked.features, fresh_masked, rtol=0, atol=0)
    torch.testing.assert_close(first_plain.features, fresh_plain, rtol=0, atol=0)
    again_masked, again_plain = probe(masked), probe(plain)
    assert again_masked.cache_hit and again_plain.cache_hit and len(calls) == 2
    assert again_masked.path != again_plain.path
    torch.testing.assert_close(again_masked.features, fresh_masked, rtol=0, atol=0)
    torch.testing.assert_close(again_plain.features, fresh_plain, rtol=0, atol=0)
    # the key is the installed state, not the object: the same mask on a fresh copy is a hit,
    # other heads a miss, and removing the mask gives back the unmasked entry
    twin = copy.deepcopy(model)
    install_head_masks(twin, [(1, 1), (1, 0)])
    assert probe(twin).path == again_masked.path and probe(twin).cache_hit
    install_head_masks(twin, [(1, 2)])
    other = probe(twin)
    assert not other.cache_hit and len(calls) == 3 and len(written()) == 6
    remove_head_mask(EncoderAdapter(twin).attention_projections(1)[3])
    assert probe(twin).path == again_plain.path and probe(twin).cache_hit and len(calls) == 3
    # a hook that cannot say what it does: features computed fresh, the cache neither read nor
    # written, and the reason said
    hooked = copy.deepcopy(model)

    def double(module, args, out):
        return (out[0] * 2, *out[1:]) if isinstance(out, tuple) else out * 2

    hooked.bert.encoder.layer[0].register_forward_hook(double)
    capsys.readouterr()
    before = written()
    fresh_hooked = real(hooked, loader)[0]["mean"]
    for _ in range(2):
        got = features.cached_features(hooked, loader, "mean", cache, key)
        assert not got.cache_hit and got.path is None
        torch.testing.assert_close(got.features, fresh_hooked, rtol=0, atol=0)
    assert written() == before and len(calls) == 5
    assert not torch.allclose(fresh_hooked[2], fresh_plain[2])  # layer 2 reads the doubled output
    err = capsys.readouterr().err
    assert "not cached" in err and "double on encoder.layer.0" in err
    assert features.model_fingerprint(hooked) is None


def test_probe_model_state_reports_a_cache_hit_the_second_time(
    tiny_model_and_data, tmp_path, capsys
):
    from reinitlab.probing.run import probe_model_state

    model, data, collate = tiny_model_and_data
    task = load_task("cola")
    kw = {"batch_size": 16, "seed": 0, "cache_dir": tmp_path}
    first = probe_model_state(model, task, data, data, collate, **kw)
    assert "extracted 40 examples x 4 layers" in capsys.readouterr().err
    second = probe_model_state(model, task, data, data, collate, **kw)
    assert "cache hit" in capsys.readouterr().err
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert first["metric"] == second["metric"] and first["variability"] == second["variability"]
    assert len(first["metric"]) == 4 and first["pooling"] == "mean"


# ---------------------------------------------------------------- MiniLM on CoLA, end to end


@needs_glue
def test_probe_command_on_minilm_cola_subset(tmp_path, capsys):
    from reinitlab.cli import main

    args = [
        "probe",
        "task=cola",
        "model=minilm-l6",
        f"data.glue_dir={GLUE}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.max_train_samples=200",
        "probe.max_dev_samples=300",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "probe.json").read_text())
    names = ["embeddings", *(f"layer_{i:02d}" for i in range(1, 7))]
    assert record["layer_names"] == names and record["num_layers"] == 6
    assert record["task"] == "cola" and record["model"] == "minilm-l6"
    assert record["scheme"]["label"] == "baseline"
    assert record["train_size"] == 200 and record["dev_size"] == 300
    assert record["primary_metric"] == "mcc" and record["pooling"] == "mean"
    for key in ("metric", "variability", "regularisation"):
        assert len(record[key]) == 7 and all(math.isfinite(v) for v in record[key])
    assert all(-1 <= m <= 1 for m in record["metric"]) and all(v > 0 for v in record["variability"])
    assert record["cache_hit"] is False and "features extracted" in out
    for name, m in zip(names, record["metric"], strict=True):
        assert f"{name:<12} {m:>9.4f}" in out  # the printed table holds every layer
    # the same model state again: features come from the cache, the numbers are identical
    assert main(args) == 0
    again = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert again["cache_hit"] is True and "features from cache" in capsys.readouterr().out
    assert again["metric"] == record["metric"] and again["variability"] == record["variability"]


def test_probe_command_bad_input(tmp_path):
    from reinitlab.cli import main

    assert main(["probe", "task=colaa", "model=tiny", "--output-dir", str(tmp_path)]) == 2
    assert main(["probe", "model=tiny", "probe.pooling=max", "--output-dir", str(tmp_path)]) == 2
    assert (
        main(["probe", "model=tiny", "probe.max_dev_samples=3", "--output-dir", str(tmp_path)]) == 2
    )
    assert not list(tmp_path.rglob("probe.json"))


# ---------------------------------------------------------------- probes around training


@needs_glue
def test_probe_before_and_after_training_go_into_the_record_and_wandb(tmp_path):
    from reinitlab.train import train
    from tests.helpers.wandb_reader import find_run_files, read_run

    fast = ["model=tiny", "task=cola", "data.max_train_samples=64", "trainer.max_epochs=1"]
    cfg = compose_cfg(
        tmp_path, *fast, "reinit.k=2", "logger=wandb", "probe.before=true", "probe.after=true"
    )
    record = train(cfg)
    probe = record["probe"]
    assert set(probe) == {"before", "after"}
    names = ["embeddings", "layer_01", "layer_02", "layer_03"]
    for stage in ("before", "after"):
        assert probe[stage]["layer_names"] == names
        assert len(probe[stage]["metric"]) == len(probe[stage]["variability"]) == 4
        assert probe[stage]["train_size"] == 64 and probe[stage]["dev_size"] == 1043
    assert probe["before"]["model_fingerprint"] != probe["after"]["model_fingerprint"]
    on_disk = json.loads((tmp_path / "out" / "result.json").read_text())
    assert on_disk["probe"]["before"]["metric"] == probe["before"]["metric"]
    run = read_run(find_run_files(tmp_path / "out")[0])
    logged = {k: v for row in run["history"] for k, v in row.items() if k.startswith("probe/")}
    for stage in ("before", "after"):
        for name, m, v in zip(
            names, probe[stage]["metric"], probe[stage]["variability"], strict=True
        ):
            assert logged[f"probe/{stage}/{name}"] == pytest.approx(m)
            assert logged[f"probe/{stage}/variability/{name}"] == pytest.approx(v)
        # the per-layer line charts (W&B stores a custom chart's data as `<key>_table`)
        assert f"probe/{stage}/metric_by_layer_table" in logged
        assert f"probe/{stage}/variability_by_layer_table" in logged
    # probing does not change training: the same job without probes ends on the same metrics
    plain = train(compose_cfg(tmp_path / "plain", *fast, "reinit.k=2", "logger=none"))
    assert "probe" not in plain
    assert plain["final"]["metrics"] == record["final"]["metrics"]


@pytest.mark.slow
@needs_glue
def test_a_head_masked_job_never_probes_its_baselines_cached_features(tmp_path):
    """Through training's callbacks (masks installed at setup, probe at fit start): a
    `reinit.mode=mask` job after its baseline, with one shared cache, extracts its own
    features; its probe differs from the baseline's above the masked layer only."""
    from reinitlab.train import train

    fast = [
        "model=tiny",
        "task=cola",
        "debug=fast",
        "deltas.enabled=false",
        "probe.before=true",
        "probe.max_dev_samples=200",
    ]
    shared = f"data.cache_dir={tmp_path / 'shared'}"
    base = train(compose_cfg(tmp_path / "base", *fast, shared))["probe"]["before"]
    masked_cfg = ["reinit=heads", "reinit.heads=[[3,1],[3,2],[3,3]]", "reinit.mode=mask"]
    masked = train(compose_cfg(tmp_path / "masked", *fast, shared, *masked_cfg))
    assert masked["reinit_plan"]["masked_heads"] and not masked["reset_tensors"]
    probe = masked["probe"]["before"]
    assert (base["cache_hit"], probe["cache_hit"]) == (False, False)
    assert probe["model_fingerprint"] != base["model_fingerprint"]
    assert len(list((tmp_path / "shared" / "features").glob("*.pt"))) == 8  # 2 states x 4
    # layer 3's heads are masked: embeddings and layers 1-2 probe the same, layer 3 not
    assert probe["metric"][:3] == base["metric"][:3]
    assert probe["variability"][3] != base["variability"][3]


# ---------------------------------------------------------------- head on layer ℓ, frozen below


def test_head_on_layer_reads_that_layer_only(tiny_model_and_data):
    import copy

    from reinitlab.training.head_layer import attach_head_to_layer

    full, data, collate = tiny_model_and_data
    full = copy.deepcopy(full).eval()
    cut = copy.deepcopy(full)
    frozen = attach_head_to_layer(cut, 1, freeze=True)
    assert len(cut.bert.encoder.layer) == 1 and cut.config.num_hidden_layers == 1
    assert frozen and all(n.startswith(("embeddings.", "encoder.layer.0.")) for n in frozen)
    trainable = {n for n, p in cut.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("bert.pooler.", "classifier.")) for n in trainable)
    batch = collate([data[i] for i in range(8)])
    batch.pop("labels")
    with torch.no_grad():
        logits = cut(**batch).logits
        # the head applied by hand to layer 1's [CLS] of the full model
        hidden = full.bert(**batch, output_hidden_states=True).hidden_states[1]
        by_hand = full.classifier(full.bert.pooler(hidden))
        torch.testing.assert_close(logits, by_hand)
        assert not torch.allclose(full(**batch).logits, logits)  # the full model reads layer 3
        # perturbing the layers above 1 in the full model changes its logits, not the head's
        for layer in full.bert.encoder.layer[1:]:
            for p in layer.parameters():
                p.add_(torch.randn_like(p))
        hidden_again = full.bert(**batch, output_hidden_states=True).hidden_states[1]
        torch.testing.assert_close(full.classifier(full.bert.pooler(hidden_again)), logits)


@needs_glue
def test_frozen_layers_stay_bit_identical_through_training(tmp_path, monkeypatch):
    import reinitlab.training.head_layer as head_layer
    from reinitlab.train import train
    from reinitlab.training.models import load_model

    cut_models = []
    real = head_layer.attach_head_to_layer

    def spy(model, layer, freeze=True):
        cut_models.append(model)
        return real(model, layer, freeze)

    monkeypatch.setattr(head_layer, "attach_head_to_layer", spy)
    cfg = compose_cfg(
        tmp_path,
        "model=tiny",
        "task=cola",
        "logger=none",
        "data.max_train_samples=64",
        "trainer.max_epochs=1",
        "head.layer=2",
        "optim.lr=1e-2",
    )
    record = train(cfg)
    assert record["steps"] == 2
    trained = cut_models[0]
    pretrained = load_model(cfg.model, load_task("cola"), head_seed=record["seeds"]["train"])
    before = dict(pretrained.named_parameters())
    after = dict(trained.named_parameters())
    assert len(trained.bert.encoder.layer) == 2
    below = [n for n in after if n.startswith(("bert.embeddings.", "bert.encoder."))]
    assert below and all(torch.equal(after[n].cpu(), before[n]) for n in below)
    assert not torch.equal(after["classifier.weight"].cpu(), before["classifier.weight"])
    assert not torch.equal(
        after["bert.pooler.dense.weight"].cpu(), before["bert.pooler.dense.weight"]
    )
    # bad input fails before training
    for bad, match in (
        ("head.layer=4", r"head.layer=4 is out of range.*0\.\.3"),
        ("reinit.k=4", r"reinit.k=4 with head.layer=2"),
    ):
        extra = [bad] if bad.startswith("head") else ["head.layer=2", bad]
        with pytest.raises(ReinitlabError, match=match):
            train(compose_cfg(tmp_path, "model=tiny", "logger=none", *extra))


def test_mpnet_features_and_head_on_layer(tmp_path):
    """MPNet: features are its hidden states pooled over real tokens, cached per layer
    (`embeddings`, layer_01..); `head.layer=1` cuts the encoder after layer 1, freezes the
    embeddings, layer 1 and the shared relative position bias, and its classifier reads layer
    1's first token."""
    import copy

    from torch.utils.data import DataLoader

    from reinitlab.probing.features import cached_features
    from reinitlab.training.head_layer import attach_head_to_layer
    from tests.helpers import padded_batch, tiny_model

    full = tiny_model("mpnet", layers=3, far_from_init=True, train=False)
    batch = padded_batch([6, 3, 5, 2], num_labels=2, pad_id=1, token_types=False)
    rows = [{k: v[i] for k, v in batch.items()} for i in range(4)]
    loader = DataLoader(rows, batch_size=4)
    feats = cached_features(full, loader, "mean", tmp_path, {"task": "cola"}, verbose=False)
    assert feats.layer_names == ["embeddings", "layer_01", "layer_02", "layer_03"]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        hidden = full.mpnet(**inputs, output_hidden_states=True).hidden_states
    for i, n in enumerate([6, 3, 5, 2]):
        for layer in range(4):
            torch.testing.assert_close(feats.features[layer, i], hidden[layer][i, :n].mean(0))

    cut = copy.deepcopy(full)
    frozen = attach_head_to_layer(cut, 1, freeze=True)
    assert len(cut.mpnet.encoder.layer) == 1 and cut.config.num_hidden_layers == 1
    assert "encoder.relative_attention_bias.weight" in frozen
    assert all(n.startswith(("embeddings.", "encoder.")) for n in frozen)
    assert not any(n.startswith("encoder.layer.1.") for n in frozen)
    trainable = {n for n, p in cut.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in cut.named_parameters() if n.startswith("classifier.")}
    with torch.no_grad():
        torch.testing.assert_close(cut(**inputs).logits, full.classifier(hidden[1]))
        assert not torch.allclose(full(**inputs).logits, cut(**inputs).logits)
