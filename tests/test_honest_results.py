"""Results are honest: atomic, group-readable, strict-JSON records; STS-B labels in range;
a non-finite dev metric fails the job instead of being recorded."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reinitlab.data.glue_io import examples_from_hub_rows, read_tsv
from reinitlab.data.tasks import TaskSpec, available_tasks, load_task
from reinitlab.errors import ReinitlabError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from tests.helpers import GLUE, REPO, compose_cfg, needs_glue  # noqa: E402


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out


# --- one atomic writer ------------------------------------------------------------------------


def test_atomic_writer_does_not_import_torch():
    code = (
        "import sys\n"
        "import reinitlab.atomic, reinitlab.report.io\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    assert _python(code).stdout.strip() == "[]"


def test_report_io_is_the_atomic_module():
    from reinitlab import atomic
    from reinitlab.report import io

    assert io.atomic_path is atomic.atomic_path and io.write_text is atomic.write_text


def test_atomic_path_keeps_the_suffix_and_cleans_up_on_error(tmp_path):
    from reinitlab.atomic import atomic_path, write_text

    target = tmp_path / "sub" / "fig.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"png"  # untouched
    write_text(tmp_path / "page.html", "<p>é</p>")
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == "<p>é</p>"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fig.png", "page.html", "sub"]


def test_torch_save_atomic_still_works(tmp_path):
    from reinitlab.atomic import torch_save_atomic

    torch_save_atomic(tmp_path / "t.pt", {"x": torch.arange(3)})
    assert torch.load(tmp_path / "t.pt")["x"].tolist() == [0, 1, 2]


# --- files get the umask's permissions ------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    code = (
        "import os\n"
        f"os.umask({umask})\n"
        "from pathlib import Path\n"
        "from reinitlab.atomic import write_json_atomic, torch_save_atomic\n"
        "from reinitlab.report.io import write_text, atomic_path\n"
        f"d = Path({str(tmp_path)!r})\n"
        "write_json_atomic(d / 'r.json', {'a': 1})\n"
        "write_text(d / 'p.html', 'x')\n"
        "with atomic_path(d / 't.csv') as t:\n"
        "    t.write_text('a,b')\n"
        "torch_save_atomic(d / 'w.pt', [1])\n"
    )
    _python(code)
    for name in ("r.json", "p.html", "t.csv", "w.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_umask_fallback_without_proc(monkeypatch):
    import builtins

    from reinitlab import atomic

    real_open = builtins.open

    def no_proc(file, *a, **k):
        if str(file).startswith("/proc/"):
            raise OSError("no /proc here")
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    old = os.umask(0o027)
    try:
        assert atomic._read_umask() == 0o027
        assert os.umask(0o027) == 0o027  # restored after reading
    finally:
        os.umask(old)


# --- strict JSON --------------------------------------------------------------------------------


def _no_constants(name):
    raise ValueError(f"non-strict JSON constant {name}")


def test_non_finite_values_are_written_as_null(tmp_path):
    from reinitlab.atomic import write_json_atomic

    record = {
        "nan": math.nan,
        "inf": math.inf,
        "nested": {"neg_inf": -math.inf, "np32": np.float32("nan"), "np64": np.float64("inf")},
        "list": [1.5, math.nan, (np.float32(2.5), np.float32("-inf"))],
        "torch": torch.tensor(float("nan")),
        "torch_ok": torch.tensor(0.25),
        "np_int": np.int64(3),
        "np_bool": np.bool_(True),
        "path": tmp_path,
    }
    write_json_atomic(tmp_path / "r.json", record)
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=_no_constants)
    assert data == {
        "nan": None,
        "inf": None,
        "nested": {"neg_inf": None, "np32": None, "np64": None},
        "list": [1.5, None, [2.5, None]],
        "torch": None,
        "torch_ok": 0.25,
        "np_int": 3,
        "np_bool": True,
        "path": str(tmp_path),
    }


# --- STS-B labels -------------------------------------------------------------------------------

STSB_HEADER = [
    "index",
    "genre",
    "filename",
    "year",
    "old_index",
    "source1",
    "source2",
    "sentence1",
    "sentence2",
    "score",
]


def _stsb_tsv(path: Path, scores: list[str]) -> Path:
    """An STS-B TSV laid out like the original (header, 10 columns, quoting off)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        w.writerow(STSB_HEADER)
        for i, score in enumerate(scores):
            w.writerow(
                [i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none"]
                + [f"A man plays {i}.", f"A man is playing {i}.", score]
            )
    return path


def test_stsb_label_range_comes_from_the_task_config():
    assert load_task("stsb").label_range == (0.0, 5.0)
    assert all(load_task(t).label_range is None for t in available_tasks() if t != "stsb")


def test_label_range_is_validated(tmp_path):
    from omegaconf import OmegaConf

    from reinitlab.paths import config_dir

    base = OmegaConf.to_container(OmegaConf.load(config_dir() / "task" / "stsb.yaml"))
    for bad in ([5, 0], [0, ".inf"], ["a", 1], [1]):
        with pytest.raises(ReinitlabError, match="label_range"):
            TaskSpec.from_config({**base, "label_range": bad})
    cola = OmegaConf.to_container(OmegaConf.load(config_dir() / "task" / "cola.yaml"))
    with pytest.raises(ReinitlabError, match="regression"):
        TaskSpec.from_config({**cola, "label_range": [0, 1]})


def test_valid_stsb_file_passes(tmp_path):
    path = _stsb_tsv(tmp_path / "train.tsv", ["5.000", "0.000", "3.800", "2.5"])
    ex = read_tsv(load_task("stsb"), path)
    assert ex.labels == [5.0, 0.0, 3.8, 2.5] and len(ex) == 4 and ex.text_b is not None


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "5.5", "-0.1", "five", ""])
def test_stsb_label_out_of_range_or_not_finite_is_refused(tmp_path, bad):
    path = _stsb_tsv(tmp_path / "dev.tsv", ["1.0", "2.0", bad, "3.0"])
    with pytest.raises(ReinitlabError) as info:
        read_tsv(load_task("stsb"), path)
    msg = str(info.value)
    # the 3rd example is line 4 of the file (line 1 is the header)
    assert str(path) in msg and "line 4:" in msg and repr(bad) in msg, msg
    assert "finite number in [0, 5]" in msg, msg


@needs_glue
def test_real_stsb_files_pass():
    task = load_task("stsb")
    for name in ("train.tsv", "dev.tsv"):
        labels = read_tsv(task, GLUE / "STS-B" / name).labels
        assert min(labels) >= 0 and max(labels) <= 5


def test_hub_rows_are_checked_too():
    task = load_task("stsb")
    rows = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [4.2, 1.0]}
    assert examples_from_hub_rows(task, rows).labels == [4.2, 1.0]
    for bad in (float("nan"), 7.0, -1.0):  # -1 is what the hub's unlabeled test split holds
        rows["label"] = [1.0, bad]
        with pytest.raises(ReinitlabError, match=r"split 'validation'.*row index 1.*\[0, 5\]"):
            examples_from_hub_rows(task, rows, "nyu-mll/glue/stsb split 'validation'")


# --- a non-finite dev metric fails the job ------------------------------------------------------


class ConstantRegressor(torch.nn.Module):
    """Predicts `value` for every example (a collapsed model); trainable, so fit() runs."""

    def __init__(self, value: float = 2.0):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([value]))
        self.steps = 0

    def forward(self, input_ids, labels):
        logits = self.bias.expand(input_ids.shape[0], 1) + 0 * input_ids[:, :1].float()
        loss = ((logits.squeeze(-1) - labels) ** 2).mean()
        if self.training:
            self.steps += 1
        return SimpleNamespace(logits=logits, loss=loss)


def _loader(n: int = 16):
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(0)
    rows = [
        {
            "input_ids": torch.randint(0, 10, (4,), generator=g),
            "labels": torch.rand((), generator=g) * 5,
        }
        for _ in range(n)
    ]
    return DataLoader(rows, batch_size=8)


def _fit(model: torch.nn.Module, lr: float = 1e-3, sanity_steps: int = 2):
    import lightning as L

    from reinitlab.training.module import GlueClassifier

    module = GlueClassifier(model, load_task("stsb"), lr=lr, remove_padding="off", fused=False)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=sanity_steps,
    )
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader())
    return module


def test_constant_predictions_fail_after_the_first_epoch_not_in_the_sanity_check():
    model = ConstantRegressor()
    with pytest.raises(ReinitlabError) as info:
        _fit(model, lr=0.0)  # lr 0: predictions stay constant, weights stay finite
    msg = str(info.value)
    assert model.steps == 2  # the sanity check (NaN too) passed; epoch 1 trained, then failed
    assert "val/pearson" in msg and "epoch 1 " in msg and "is nan" in msg, msg
    assert "constant" in msg, msg


def test_diverged_weights_are_named_as_the_cause():
    model = ConstantRegressor()
    with torch.no_grad():
        model.bias.fill_(float("nan"))
    with pytest.raises(ReinitlabError) as info:
        _fit(model, sanity_steps=0)
    msg = str(info.value)
    assert "val/pearson" in msg and "epoch 1 " in msg and "is nan" in msg, msg
    assert "diverged" in msg and "optim.lr" in msg, msg


@needs_glue
def test_train_fails_with_the_reason_and_writes_no_result(tmp_path, monkeypatch):
    import reinitlab.training.module
    from reinitlab.train import train
    from reinitlab.training.record import RESULT_FILENAME

    real = reinitlab.training.module.predictions
    monkeypatch.setattr(
        reinitlab.training.module,
        "predictions",
        lambda task, logits: torch.zeros_like(real(task, logits)),
    )
    cfg = compose_cfg(
        tmp_path,
        "model=tiny",
        "logger=none",
        "task=stsb",
        "data.max_train_samples=32",
        "trainer.max_epochs=1",
    )
    with pytest.raises(ReinitlabError, match=r"val/pearson .*is nan after epoch 1 .*constant"):
        train(cfg)
    assert not (tmp_path / "out" / RESULT_FILENAME).exists()
