"""Read GLUE examples from original TSV files or the Hugging Face hub into one common shape.

Both sources produce `Examples`: `text_a`, optional `text_b`, and labels as class indices
(in the hub's ClassLabel order) or floats (STS-B). Training subsets are drawn here too,
so every job of a sweep with the same subset seed sees the same examples.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reinitlab import hub
from reinitlab.data.tasks import SourceFields, TaskSpec
from reinitlab.errors import ReinitlabError
from reinitlab.paths import missing_file_error

# GLUE rows can exceed csv's default 128 KiB field limit (long MNLI parses).
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Examples:
    """One split's examples as parallel lists; `text_b` is None for single-sentence tasks, labels
    are class indices or floats (regression)."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[float] | list[int]

    def __len__(self) -> int:
        return len(self.text_a)

    def select(self, indices: list[int] | np.ndarray) -> Examples:
        """The examples at `indices`, in that order."""
        idx = [int(i) for i in indices]
        return Examples(
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=[self.labels[i] for i in idx],
        )


def resolve_glue_dir(glue_dir: str | os.PathLike | None) -> Path | None:
    """The GLUE root to read from, or None to use the hub. A given directory must exist."""
    if glue_dir is None or str(glue_dir) == "":
        return None
    path = Path(os.path.expanduser(str(glue_dir)))
    if not path.is_dir():
        raise ReinitlabError(
            f"data.glue_dir={glue_dir!r} is not a directory. Point data.glue_dir (or the "
            "GLUE_DIR environment variable) at a folder holding <TASK>/train.tsv, dev.tsv, "
            "or leave it unset to download from the Hugging Face hub."
        )
    return path


def task_dir(task: TaskSpec, glue_root: Path) -> Path:
    """The task's folder under the GLUE root (its GLUE name, task name or upper-case name);
    the error lists the folders that are there."""
    for name in (task.glue_dir_name, task.name, task.name.upper()):
        if (glue_root / name).is_dir():
            return glue_root / name
    found = sorted(p.name for p in glue_root.iterdir() if p.is_dir())
    raise ReinitlabError(
        f"task {task.name}: no folder {task.glue_dir_name!r} under data.glue_dir={str(glue_root)!r} "
        f"(folders there: {found or 'none'})"
    )


def check_source(task: TaskSpec, glue_dir: str | os.PathLike | None) -> None:
    """Before anything loads: the task's TSV files are where `data.glue_dir` says, or (unset)
    the hub can answer. Reading and parsing them is left to the job (it caches the result)."""
    root = resolve_glue_dir(glue_dir)
    if root is None:
        reason = hub.unreachable_reason()
        if reason is not None:
            raise ReinitlabError(
                f"task {task.name}: data.glue_dir is not set (nor $GLUE_DIR), so the data would "
                f"come from the Hugging Face hub ({task.hub_path}), but the hub is {reason}. "
                "Set GLUE_DIR=<folder of GLUE TSVs> or data.glue_dir=... (make install records "
                "../shared/data/glue when it exists)."
            )
        return
    folder = task_dir(task, root)
    for tsv in (task.train_tsv, *(v.tsv for v in task.validation)):
        if not (folder / tsv).is_file():
            raise missing_file_error(f"task {task.name}", folder / tsv)


def read_tsv(task: TaskSpec, path: Path) -> Examples:
    """Parse one original GLUE TSV (quoting off: GLUE texts contain unbalanced quotes)."""
    if not path.is_file():
        raise missing_file_error(f"task {task.name}", path)
    spec: SourceFields = task.tsv
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (OSError, UnicodeDecodeError) as e:
        raise ReinitlabError(f"task {task.name}: cannot read {path} as UTF-8 TSV: {e}") from e
    if spec.header:
        if not rows:
            raise ReinitlabError(f"task {task.name}: {path} is empty (expected a header row)")
        header, body, first_line = rows[0], rows[1:], 2
    else:
        header, body, first_line = list(spec.columns or ()), rows, 1
    wanted = [*spec.text_fields, spec.label_field]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ReinitlabError(
            f"task {task.name}: {path} has no column(s) {missing} (columns found: {header})"
        )
    cols = [header.index(c) for c in wanted]
    text_a, text_b, labels = [], [], []
    skipped = 0
    for lineno, row in enumerate(body, start=first_line):
        if len(row) != len(header):
            if spec.skip_malformed:
                skipped += 1
                continue
            raise ReinitlabError(
                f"task {task.name}: {path}, line {lineno}: expected {len(header)} tab-separated "
                f"fields, found {len(row)}; is this the original GLUE file?"
            )
        values = [row[i] for i in cols]
        text_a.append(values[0])
        if len(spec.text_fields) == 2:
            text_b.append(values[1])
        labels.append(_parse_label(task, values[-1], path, lineno))
    if skipped:
        print(
            f"[reinitlab] {task.name}: skipped {skipped} malformed rows in {path}", file=sys.stderr
        )
    if not text_a:
        raise ReinitlabError(f"task {task.name}: {path} holds no examples")
    return Examples(text_a, text_b if len(spec.text_fields) == 2 else None, labels)


def allowed_labels(task: TaskSpec) -> str:
    """What a regression label may be, in words (from the task's `label_range`)."""
    if task.label_range is None:
        return "a finite number"
    low, high = task.label_range
    return f"a finite number in [{low:g}, {high:g}]"


def regression_label(task: TaskSpec, value, where: str) -> float:
    """`value` as a float label, refused (naming `where` and what is allowed) unless it is a
    finite number inside the task's `label_range`. Used for TSV and hub labels alike."""
    try:
        label = float(value)
    except (TypeError, ValueError):
        label = None
    if label is None or not math.isfinite(label) or not _in_range(task, label):
        raise ReinitlabError(
            f"task {task.name}: {where}: label {value!r} is not allowed; "
            f"labels must be {allowed_labels(task)}"
        )
    return label


def _in_range(task: TaskSpec, label: float) -> bool:
    return task.label_range is None or task.label_range[0] <= label <= task.label_range[1]


def _parse_label(task: TaskSpec, value: str, path: Path, lineno: int) -> float | int:
    if task.labels is None:
        return regression_label(task, value, f"{path}, line {lineno}")
    try:
        return task.labels.index(value)
    except ValueError:
        raise ReinitlabError(
            f"task {task.name}: {path}, line {lineno}: label {value!r} is not one of "
            f"{list(task.labels)}"
        ) from None


def examples_from_hub_rows(task: TaskSpec, rows, source: str = "hub rows") -> Examples:
    """Convert rows of the hub's `nyu-mll/glue` (already integer ClassLabels) to `Examples`.

    Regression labels are checked as TSV ones are; `source` names the split in the error."""
    fields = task.hub.text_fields
    labels = rows[task.hub.label_field]
    if task.is_regression:
        labels = [
            regression_label(task, x, f"{source}, row index {i}") for i, x in enumerate(labels)
        ]
    else:
        labels = [int(x) for x in labels]
    return Examples(
        text_a=list(rows[fields[0]]),
        text_b=list(rows[fields[1]]) if len(fields) == 2 else None,
        labels=labels,
    )


def load_hub_split(task: TaskSpec, split: str) -> Examples:
    """One split from the Hugging Face hub; any failure becomes an error suggesting local TSVs."""
    try:
        import datasets

        ds = datasets.load_dataset(task.hub_path, task.hub_name, split=split)
    except Exception as e:  # offline, hub down, auth...: all mean "use local files"
        raise ReinitlabError(
            f"task {task.name}: could not load {task.hub_path}/{task.hub_name} split {split!r} "
            f"from the Hugging Face hub ({type(e).__name__}: {e}). Without network access, set "
            "data.glue_dir=<folder of GLUE TSVs> or the GLUE_DIR environment variable."
        ) from e
    source = f"{task.hub_path}/{task.hub_name} split {split!r} (Hugging Face hub)"
    return examples_from_hub_rows(task, ds[:], source)


def load_split(task: TaskSpec, split: str, glue_root: Path | None) -> Examples:
    """`split` is `train` or the `name` of one of the task's validation splits."""
    if split == "train":
        tsv, hub = task.train_tsv, task.train_hub
    else:
        match = [v for v in task.validation if v.name == split]
        if not match:
            raise ReinitlabError(
                f"task {task.name}: no split {split!r}; splits: "
                f"{['train', *(v.name for v in task.validation)]}"
            )
        tsv, hub = match[0].tsv, match[0].hub
    if glue_root is None:
        return load_hub_split(task, hub)
    return read_tsv(task, task_dir(task, glue_root) / tsv)


def subset_indices(labels: list, n: int | None, seed: int, stratify: bool) -> np.ndarray | None:
    """A fixed random subset of size n (sorted indices), stratified by label when asked.

    None means "use everything" (n is None or not smaller than the data).
    """
    total = len(labels)
    if n is None or n >= total:
        return None
    if n <= 0:
        raise ReinitlabError(f"data.max_train_samples must be positive, got {n}")
    from sklearn.model_selection import train_test_split

    indices = np.arange(total)
    strat = np.asarray(labels) if stratify else None
    if strat is not None and n < len(np.unique(strat)):
        strat = None  # fewer examples than classes: stratification is impossible
    chosen, _ = train_test_split(indices, train_size=n, stratify=strat, random_state=seed)
    return np.sort(chosen)
