"""Weight movement and CKA (reinitlab.deltas.movement, reinitlab.deltas.callback): numbers vs naive
computations from saved state dicts, head slicing, CKA properties, and end-to-end jobs that
write them to the record, the CSV log and W&B."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import torch

from reinitlab.deltas.movement import head_movement, layer_movement, linear_cka, snapshot_encoder
from reinitlab.training.record import RESULT_FILENAME
from tests.helpers import FAST, GLUE, compose_cfg, needs_glue, tiny_model
from tests.test_train import run_cli

LAYERS, HEADS, HIDDEN = 3, 4, 32
D = HIDDEN // HEADS


# the tiny BERT these tests train (BERT's own dropout): tiny_model("bert", **MODEL)
MODEL = dict(
    layers=LAYERS,
    hidden=HIDDEN,
    heads=HEADS,
    vocab_size=50,
    max_position_embeddings=16,
    dropout=None,
)


def trained_a_few_steps(model, steps: int = 3):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 50, (4, 10), generator=gen)
        loss = model(input_ids=ids, labels=torch.tensor([0, 1, 0, 1])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


# -- naive references: plain loops over the state dict, names spelled out for BERT -----------
def naive_layer(before: dict, after: dict, layer: int, part: str, root: str = "bert.") -> float:
    prefix = f"{root}encoder.layer.{layer}."
    keep = {
        "all": lambda n: True,
        "attention": lambda n: n.startswith("attention.") and "LayerNorm" not in n,
        "ffn": lambda n: n.startswith(("intermediate.dense.", "output.dense.")),
    }[part]
    num = den = 0.0
    for name, ref in before.items():
        if name.startswith(prefix) and keep(name[len(prefix) :]):
            num += torch.linalg.norm((after[name] - ref).flatten()).item() ** 2
            den += torch.linalg.norm(ref.flatten()).item() ** 2
    return math.sqrt(num) / math.sqrt(den)


def naive_head(before: dict, after: dict, layer: int, head: int, root: str = "bert.") -> float:
    p = f"{root}encoder.layer.{layer}.attention."
    rows = slice(head * D, (head + 1) * D)
    num = den = 0.0
    for proj in ("self.query", "self.key", "self.value"):
        for kind in ("weight", "bias"):
            ref = before[f"{p}{proj}.{kind}"][rows]
            num += torch.linalg.norm((after[f"{p}{proj}.{kind}"][rows] - ref).flatten()) ** 2
            den += torch.linalg.norm(ref.flatten()) ** 2
    ref = before[f"{p}output.dense.weight"][:, rows]
    num += torch.linalg.norm((after[f"{p}output.dense.weight"][:, rows] - ref).flatten()) ** 2
    den += torch.linalg.norm(ref.flatten()) ** 2
    return math.sqrt(num) / math.sqrt(den)


def test_layer_and_head_movement_equal_naive_computation_from_state_dicts():
    model = tiny_model("bert", **MODEL)
    before = copy.deepcopy(model.state_dict())
    snap = snapshot_encoder(model)
    trained_a_few_steps(model)
    after = model.state_dict()
    moved = layer_movement(model, snap)
    heads = head_movement(model, snap)
    assert heads.shape == (LAYERS, HEADS)
    for layer in range(LAYERS):
        for part in ("all", "attention", "ffn"):
            expected = naive_layer(before, after, layer, part)
            assert expected > 0
            assert moved[part][layer].item() == pytest.approx(expected, rel=1e-5)
        for head in range(HEADS):
            expected = naive_head(before, after, layer, head)
            assert heads[layer, head].item() == pytest.approx(expected, rel=1e-5)
    # the snapshot is a copy: training did not move it
    assert torch.equal(
        snap[0]["attention.self.query.weight"],
        before["bert.encoder.layer.0.attention.self.query.weight"],
    )


def test_moving_one_heads_weights_changes_only_that_heads_delta():
    model = tiny_model("bert", **MODEL)
    snap = snapshot_encoder(model)
    assert torch.count_nonzero(head_movement(model, snap)) == 0
    layer, head = 1, 2
    rows = slice(head * D, (head + 1) * D)
    attn = model.bert.encoder.layer[layer].attention
    with torch.no_grad():
        attn.self.value.weight[rows] += 0.5
        attn.output.dense.weight[:, rows] *= 2.0
    heads = head_movement(model, snap)
    changed = torch.nonzero(heads).tolist()
    assert changed == [[layer, head]]
    moved = layer_movement(model, snap)
    assert torch.nonzero(moved["attention"]).flatten().tolist() == [layer]
    assert torch.count_nonzero(moved["ffn"]) == 0
    # the output bias belongs to no head: it moves the layer, not any head
    with torch.no_grad():
        attn.output.dense.bias += 1.0
    assert torch.equal(head_movement(model, snap), heads)
    assert layer_movement(model, snap)["attention"][layer] > moved["attention"][layer]


def test_mpnet_layer_and_head_movement_equal_naive_computation_from_state_dicts():
    """MPNet's names (attention.attn.{q,k,v,o}, attention.LayerNorm), spelled out here; the
    relative position bias is shared by all layers and belongs to none."""
    model = tiny_model("mpnet", **MODEL)
    before = copy.deepcopy(model.state_dict())
    snap = snapshot_encoder(model)
    trained_a_few_steps(model)
    after = model.state_dict()
    moved, heads = layer_movement(model, snap), head_movement(model, snap)
    assert heads.shape == (LAYERS, HEADS)
    assert all("relative_attention_bias" not in n for layer in snap for n in layer)
    for layer in range(LAYERS):
        prefix = f"mpnet.encoder.layer.{layer}."
        keep = {
            "all": lambda n: True,
            "attention": lambda n: n.startswith("attention.attn."),
            "ffn": lambda n: n.startswith(("intermediate.dense.", "output.dense.")),
        }
        for part, wanted in keep.items():
            num = den = 0.0
            for name, ref in before.items():
                if name.startswith(prefix) and wanted(name[len(prefix) :]):
                    num += torch.linalg.norm((after[name] - ref).flatten()).item() ** 2
                    den += torch.linalg.norm(ref.flatten()).item() ** 2
            assert num > 0
            assert moved[part][layer].item() == pytest.approx(math.sqrt(num / den), rel=1e-5)
        for head in range(HEADS):
            rows = slice(head * D, (head + 1) * D)
            pieces = [
                (f"{prefix}attention.attn.{p}.{kind}", (rows,))
                for p in "qkv"
                for kind in ("weight", "bias")
            ] + [(f"{prefix}attention.attn.o.weight", (slice(None), rows))]
            num = sum(
                torch.linalg.norm((after[n][i] - before[n][i]).flatten()).item() ** 2
                for n, i in pieces
            )
            den = sum(torch.linalg.norm(before[n][i].flatten()).item() ** 2 for n, i in pieces)
            assert heads[layer, head].item() == pytest.approx(math.sqrt(num / den), rel=1e-5)


def test_linear_cka_properties_and_hand_formula():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    assert linear_cka(x, x) == pytest.approx(1.0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    base = linear_cka(x, y)
    assert 0 < base < 1
    assert linear_cka(x @ q, y) == pytest.approx(base)
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(base)
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(base)  # centring
    # a tiny case by hand: x = [1,2,3], y = [1,0,2] (1-d): CKA = corr(x, y)^2
    xs = torch.tensor([[1.0], [2.0], [3.0]])
    ys = torch.tensor([[1.0], [0.0], [2.0]])
    # centred: xc = [-1,0,1], yc = [0,-1,1]; <xc,yc> = 1; |xc|^2 = 2, |yc|^2 = 2 -> 1/4
    assert linear_cka(xs, ys) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        linear_cka(x, y[:5])


DELTA_KEYS = {
    "layer_names",
    "layer",
    "layer_from_pretrained",
    "head",
    "head_from_pretrained",
    "cka",
    "history",
}


def check_schema(d: dict, layers: int, heads: int) -> None:
    assert set(d) == DELTA_KEYS
    assert d["layer_names"] == [f"layer_{i:02d}" for i in range(1, layers + 1)]
    for key in ("layer", "layer_from_pretrained"):
        assert set(d[key]) == {"all", "attention", "ffn"}
        assert all(len(v) == layers for v in d[key].values())
    for key in ("head", "head_from_pretrained"):
        assert len(d[key]) == layers and all(len(r) == heads for r in d[key])
    assert d["cka"]["layer_names"] == ["embeddings", *d["layer_names"]]
    assert len(d["cka"]["values"]) == layers + 1
    assert d["history"] and all(set(h) == {"step", "layer_all"} for h in d["history"])


@needs_glue
def test_tiny_run_records_deltas_and_csv_columns(tmp_path):
    import lightning as L

    from reinitlab.train import train

    states: dict[str, dict] = {}

    def save(name, pl_module):
        states[name] = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    class SaveStates(L.Callback):  # runs after the reinit and DeltaTracker callbacks
        def setup(self, trainer, pl_module, stage):  # before fit start: still pretrained
            save("pretrained", pl_module)

        def on_train_start(self, trainer, pl_module):  # after the reinit
            save("start", pl_module)

        def on_fit_end(self, trainer, pl_module):
            save("end", pl_module)

    cfg = job_cfg(tmp_path, "logger=csv", "reinit.k=2", "trainer.max_epochs=2")
    record = train(cfg, extra_callbacks=[SaveStates()])
    d = record["deltas"]
    check_schema(d, LAYERS, HEADS)
    # every final number equals the naive computation from the saved state dicts
    pre, start, end = states["pretrained"], states["start"], states["end"]
    for layer in range(LAYERS):
        for part in ("all", "attention", "ffn"):
            assert d["layer"][part][layer] == pytest.approx(naive_layer(start, end, layer, part))
            assert d["layer_from_pretrained"][part][layer] == pytest.approx(
                naive_layer(pre, end, layer, part)
            )
        for head in range(HEADS):
            assert d["head"][layer][head] == pytest.approx(naive_head(start, end, layer, head))
            assert d["head_from_pretrained"][layer][head] == pytest.approx(
                naive_head(pre, end, layer, head)
            )
    json.dumps(d)  # plain JSON
    assert json.loads((tmp_path / "out" / RESULT_FILENAME).read_text())["deltas"] == d
    # layers 2-3 were re-initialized: far from pretrained; layer 1 moved only by fine-tuning
    # (two independent N(0, 0.02) draws are sqrt(2) apart relative to one; the whole layer
    # also holds the LayerNorm weights, which the reinit sets back to their pretrained 1s)
    pre = d["layer_from_pretrained"]["all"]
    assert pre[1] > 0.2 and pre[2] > 0.2 and pre[0] < 0.02
    attn = d["layer_from_pretrained"]["attention"]
    assert attn[1] > 1.2 and attn[2] > 1.2 and attn[0] < 0.02
    assert min(min(r) for r in d["head_from_pretrained"][1:]) > 1.2
    assert max(d["head_from_pretrained"][0]) < 0.02
    assert all(0 < v < 0.05 for v in d["layer"]["all"])  # lr 2e-5, a few steps
    assert d["cka"]["values"][0] == pytest.approx(1.0, abs=1e-3)  # embeddings barely move
    assert [h["step"] for h in d["history"]] == [h["step"] for h in record["history"]]
    assert d["history"][-1]["layer_all"] == d["layer"]["all"]
    (metrics,) = list((tmp_path / "out" / "csv").rglob("metrics.csv"))
    df = pd.read_csv(metrics)
    for i in range(1, LAYERS + 1):
        for part in ("all", "attention", "ffn", "from_pretrained"):
            assert f"deltas/layer_{i:02d}/{part}" in df.columns
        assert f"deltas/cka/layer_{i:02d}" in df.columns
    last = df.dropna(subset=["deltas/layer_03/all"]).iloc[-1]
    assert last["deltas/layer_03/all"] == pytest.approx(d["layer"]["all"][2])
    assert last["deltas/layer_02/from_pretrained"] == pytest.approx(pre[1])
    assert last["deltas/cka/layer_03"] == pytest.approx(d["cka"]["values"][3])
    assert len(df.dropna(subset=["deltas/layer_01/all"])) == 2  # one row per validation


def job_cfg(tmp_path, *overrides: str):
    """A tiny job's config; chain.cache_dir is pinned because main's job_key (at this branch's
    base) fails to resolve its `${data.cache_dir}` interpolation (fixed separately in main)."""
    return compose_cfg(tmp_path, *FAST, f"chain.cache_dir={tmp_path / 'stages'}", *overrides)


def wandb_deltas(run: dict) -> list[dict]:
    return [h for h in run["history"] if "deltas/layer_01/all" in h]


def assert_run_matches_record(run: dict, record: dict) -> None:
    rows = wandb_deltas(run)
    assert len(rows) == len(record["deltas"]["history"])
    last, d = rows[-1], record["deltas"]
    for i, name in enumerate(d["layer_names"]):
        for part in ("all", "attention", "ffn"):
            assert last[f"deltas/{name}/{part}"] == pytest.approx(d["layer"][part][i])
        assert last[f"deltas/{name}/from_pretrained"] == pytest.approx(
            d["layer_from_pretrained"]["all"][i]
        )
    for name, value in zip(d["cka"]["layer_names"], d["cka"]["values"], strict=True):
        assert last[f"deltas/cka/{name}"] == pytest.approx(value)
    # per-head movement as scalars, one per (layer, head), equal to the record's head matrix
    logged = {k: v for k, v in last.items() if k.startswith("deltas/head/")}
    expected = {
        f"deltas/head/L{i + 1:02d}H{h + 1:02d}": value
        for i, row in enumerate(d["head"])
        for h, value in enumerate(row)
    }
    assert len(expected) == LAYERS * HEADS and logged.keys() == expected.keys()
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, rel=1e-6), key
    assert last["deltas/heads"]["_type"] == "image-file"
    table = last["deltas/table"]
    assert table["_type"] == "table-file" and table["nrows"] == len(d["layer_names"])


@needs_glue
def test_wandb_offline_run_holds_the_records_final_deltas(tmp_path, monkeypatch):
    from reinitlab.train import train
    from tests.helpers.wandb_reader import find_run_files, read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = job_cfg(tmp_path, "logger=wandb", "reinit.k=1", "study=my-study")
    record = train(cfg)
    (run_file,) = find_run_files(tmp_path / "out")
    run = read_run(run_file)
    assert_run_matches_record(run, record)
    # the study is the W&B group; flat keys a W&B filter or group-by can use
    assert run["group"] == "my-study"
    config = run["config"]
    flat = {k: config[k] for k in ("study", "task_name", "model_name", "scheme", "label", "k")}
    assert flat == {
        "study": "my-study",
        "task_name": record["task"],
        "model_name": "tiny",
        "scheme": "progressive",
        "label": "k=1",
        "k": 1,
    }
    assert config["layer"] is None and config["head"] is None and config["seed"] == 0
    assert config["is_baseline"] is False
    # define_metric: the summary holds the best and the final val/primary
    assert run["summary"]["val/primary"] == {
        "max": pytest.approx(record["best"]["metrics"]["val/primary"]),
        "last": pytest.approx(record["final"]["metrics"]["val/primary"]),
    }


@needs_glue
@pytest.mark.slow
def test_multirun_gives_each_wandb_run_its_own_deltas(tmp_path):
    from tests.helpers.wandb_reader import find_run_files, read_run

    sweep = tmp_path / "sweep"
    out = run_cli(
        "-m",
        "model=tiny",
        "reinit.k=1,2",
        "logger=wandb",
        f"data.glue_dir={GLUE}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"chain.cache_dir={tmp_path / 'stages'}",
        "data.max_train_samples=32",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env_extra={"WANDB_MODE": "offline"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob(f"*/{RESULT_FILENAME}"))]
    runs = [read_run(f) for f in find_run_files(sweep)]
    # the study's sweeper adds the baseline job (reinit=none) to k=1,2
    assert sorted(r["scheme"].get("k", 0) for r in records) == [0, 1, 2]
    assert len(runs) == 3 and len({r["run_id"] for r in runs}) == 3
    for run in runs:
        rec = next(r for r in records if r["scheme"].get("k") == run["config"]["reinit"].get("k"))
        assert_run_matches_record(run, rec)
    # the two jobs re-initialized different layers, and their deltas say so
    by_k = {r["scheme"].get("k"): r["deltas"]["layer_from_pretrained"]["all"] for r in records}
    assert max(by_k[None]) < 0.02  # the baseline re-initialized nothing
    assert by_k[2][0] < 0.02 < 0.2 < by_k[1][0]  # k=1 re-initialized layer 1 too, k=2 not
    assert min(by_k[1][1:] + by_k[2][1:]) > 0.2


def test_resumed_tracker_keeps_the_original_fit_start(tmp_path):
    """A job resumed from a checkpoint measures from its first fit start, not from the
    half-trained weights it resumes with: the start snapshot is in the callback state."""
    from types import SimpleNamespace

    from reinitlab.deltas.callback import DeltaTracker

    model = tiny_model("bert", **MODEL)
    module = SimpleNamespace(model=model)
    first = DeltaTracker(model)
    first.on_fit_start(None, module)
    trained_a_few_steps(model)
    path = tmp_path / "state.pt"
    torch.save(first.state_dict(), path)

    resumed = DeltaTracker(model)  # built again by the re-run job
    resumed.load_state_dict(torch.load(path, weights_only=False))  # Lightning restores first
    resumed.on_fit_start(None, module)
    for a, b in zip(resumed.start, first.start, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    moved = resumed.compute(model)["layer"]["all"]
    assert min(moved) > 0  # measured from the original start, not from now
    fresh = DeltaTracker(model)
    fresh.on_fit_start(None, module)
    assert max(fresh.compute(model)["layer"]["all"]) == 0
