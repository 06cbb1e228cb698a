"""Read a W&B offline run back from its `.wandb` transaction log: what a job logged (its
config, history and summary keys), for `reinitlab dashboard` and the tests.

wandb 0.31 writes every run record to `<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb` but
ships no Python reader for it. The format, checked against files wandb 0.31 actually writes:

* a 7-byte file header: the magic `b":W&B"`, then `0xBEE1` as 2 little-endian bytes, then a
  version byte `0`;
* then a LevelDB-style log: the file is cut into 32 KiB blocks (counted from the start of the
  file, header included). Each physical record has a 7-byte header -- CRC (4 bytes LE),
  payload length (2 bytes LE), type (1 byte: 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST) -- then the
  payload. A record never straddles a block: a large one is cut into FIRST, MIDDLE..., LAST
  fragments, and when fewer than 7 bytes are left in a block they are zero padding.
  The CRC is the standard CRC-32 (`zlib.crc32`, *not* LevelDB's masked CRC-32C) of the type
  byte followed by the payload.
* each reassembled payload is a serialized `wandb.proto.wandb_internal_pb2.Record`.

API::

    read_records(path) -> list[Record]   # every record in the file, in order
    find_run_files(save_dir) -> list[Path]  # the run-*.wandb files under a save dir
    read_run(run_dir_or_file) -> dict    # the run's identity, config, history and summary

`read_run` returns::

    {"run_id": str, "project": str, "name": str, "group": str, "job_type": str,
     "config": {key: value}, "history": [{key: value}, ...], "summary": {key: value},
     "exit_code": int | None}

Values are the decoded JSON. How wandb 0.31 writes them (and so what comes back):

* config: nested dicts passed to `wandb.init(config=...)` or `config.update` stay nested --
  `{"task": {"name": "cola"}}` is stored as one key `task` with the JSON `{"name": "cola"}`.
  A key with a dot (`config.update({"task.k": 3})`) is kept as the literal key `"task.k"`.
  wandb's own `_wandb` entry is dropped. Later config records update/remove keys in order.
* history: one dict per `wandb.log` step, including wandb's `_step`, `_timestamp` and
  `_runtime`. Keys are as logged (`"val/mcc"` stays one key); a nested dict logged as
  `{"n": {"b": 1}}` comes back nested, as `{"n": {"b": 1}}`.
* summary: the final state after applying every summary record's updates and removes in
  order; nested keys become nested dicts. wandb's `_wandb` entry is dropped; `_step`,
  `_runtime` and `_timestamp` are kept.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = b":W&B" + struct.pack("<H", 0xBEE1) + b"\x00"
BLOCK_SIZE = 32 * 1024
HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """The file is not a wandb transaction log, or it is corrupt."""


def _payloads(data: bytes, path: Path, allow_truncated_tail: bool) -> list[bytes]:
    if data[: len(FILE_HEADER)] != FILE_HEADER:
        raise WandbFileError(f"{path}: not a .wandb file (header {data[:7]!r})")
    out: list[bytes] = []
    pending: list[bytes] | None = None  # fragments of a FIRST..LAST record
    pos = len(FILE_HEADER)
    while pos < len(data):
        left = BLOCK_SIZE - pos % BLOCK_SIZE
        if left < HEADER_SIZE:  # block trailer: zero padding
            if data[pos : pos + left].strip(b"\x00"):
                raise WandbFileError(f"{path}: non-zero block trailer at byte {pos}")
            pos += left
            continue
        if pos + HEADER_SIZE > len(data):
            if allow_truncated_tail:
                break
            raise WandbFileError(f"{path}: truncated record header at byte {pos}")
        crc, length, rtype = struct.unpack("<IHB", data[pos : pos + HEADER_SIZE])
        if rtype == 0 and length == 0 and crc == 0:  # preallocated / zero-filled tail
            if data[pos:].strip(b"\x00"):
                raise WandbFileError(f"{path}: zero record header followed by data at {pos}")
            break
        if HEADER_SIZE + length > left:
            raise WandbFileError(f"{path}: record at byte {pos} crosses its block boundary")
        start = pos + HEADER_SIZE
        payload = data[start : start + length]
        if len(payload) < length:
            if allow_truncated_tail:
                break
            raise WandbFileError(f"{path}: truncated record at byte {pos}")
        if zlib.crc32(bytes([rtype]) + payload) != crc:
            raise WandbFileError(f"{path}: checksum mismatch in record at byte {pos}")
        pos = start + length
        if rtype == FULL:
            if pending is not None:
                raise WandbFileError(f"{path}: FULL record inside a fragmented one at {pos}")
            out.append(payload)
        elif rtype == FIRST:
            if pending is not None:
                raise WandbFileError(f"{path}: FIRST record inside a fragmented one at {pos}")
            pending = [payload]
        elif rtype in (MIDDLE, LAST):
            if pending is None:
                raise WandbFileError(f"{path}: record type {rtype} without a FIRST at {pos}")
            pending.append(payload)
            if rtype == LAST:
                out.append(b"".join(pending))
                pending = None
        else:
            raise WandbFileError(f"{path}: unknown record type {rtype} at byte {pos}")
    if pending is not None and not allow_truncated_tail:
        raise WandbFileError(f"{path}: file ends inside a fragmented record")
    return out


def read_records(path: str | Path, *, allow_truncated_tail: bool = False) -> list[pb.Record]:
    """Every `Record` in a `.wandb` file, in write order.

    Raises `WandbFileError` on a bad header, a checksum mismatch or a malformed log. With
    `allow_truncated_tail=True`, an incomplete last record (a run still being written) is
    dropped instead.
    """
    path = Path(path)
    records = []
    for payload in _payloads(path.read_bytes(), path, allow_truncated_tail):
        rec = pb.Record()
        rec.ParseFromString(payload)
        records.append(rec)
    return records


def find_run_files(save_dir: str | Path) -> list[Path]:
    """The `run-*.wandb` files under `save_dir` (searched recursively), sorted by path."""
    return sorted(Path(save_dir).rglob("run-*.wandb"))


def _key_path(item: Any) -> list[str]:
    """An item's key as a path: `nested_key` when set, else `[key]`."""
    return list(item.nested_key) if item.nested_key else [item.key]


def _set(target: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[path[-1]] = value


def _remove(target: dict, path: list[str]) -> None:
    for part in path[:-1]:
        target = target.get(part)
        if not isinstance(target, dict):
            return
    target.pop(path[-1], None)


def _apply(target: dict, record: Any) -> None:
    """Apply a ConfigRecord/SummaryRecord's updates and removes to `target`."""
    for item in record.update:
        _set(target, _key_path(item), json.loads(item.value_json))
    for item in record.remove:
        _remove(target, _key_path(item))


def read_run(run: str | Path) -> dict[str, Any]:
    """The run in `run` (a `run-*.wandb` file, or an `offline-run-*` folder holding one).

    See the module docstring for the shape of the result and how values are decoded.
    """
    run = Path(run)
    if run.is_dir():
        files = sorted(run.glob("run-*.wandb"))
        if len(files) != 1:
            raise WandbFileError(f"{run}: expected one run-*.wandb file, found {len(files)}")
        run = files[0]
    result: dict[str, Any] = {
        "run_id": None,
        "project": None,
        "name": None,
        "group": None,
        "job_type": None,
        "config": {},
        "history": [],
        "summary": {},
        "exit_code": None,
    }
    seen_run = False
    for rec in read_records(run):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            if not seen_run:
                result.update(
                    run_id=r.run_id,
                    project=r.project,
                    name=r.display_name,
                    group=r.run_group,
                    job_type=r.job_type,
                )
                seen_run = True
            _apply(result["config"], r.config)
            _apply(result["summary"], r.summary)
        elif kind == "config":
            _apply(result["config"], rec.config)
        elif kind == "summary":
            _apply(result["summary"], rec.summary)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _set(row, _key_path(item), json.loads(item.value_json))
            result["history"].append(row)
        elif kind == "exit":
            result["exit_code"] = rec.exit.exit_code
    if not seen_run:
        raise WandbFileError(f"{run}: no run record")
    result["config"].pop("_wandb", None)
    result["summary"].pop("_wandb", None)
    return result


def flat_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys of a (nested) summary as W&B names them in panels: `val/primary.max`."""
    out = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "_type" not in value:
            out += flat_keys(value, f"{name}.")
        else:
            out.append(name)
    return out
