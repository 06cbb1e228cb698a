"""Every local data file a job reads, checked whole before a sweep launches anything.

The job checks (`check_source`, `check_squad_source`) only see that the files exist; a wrong
field count on line 5,000 of a TSV, an STS-B score of NaN or 99, or a truncated SQuAD JSON
would otherwise surface as each job starts, every job of the sweep failing on its own. Here
each file is parsed by the same readers the jobs use (`glue_io.read_tsv`,
`squad_io.read_squad_json`: one parser, one set of error messages with file and line), once
per distinct file: the outcome is remembered by file (device and inode, which a path names),
size and modification time, so a 10,000-job sweep reads each file once, and an edited file is
read again.
"""

from __future__ import annotations

from pathlib import Path

from reinitlab.data import glue_io, squad_io
from reinitlab.data.tasks import TaskSpec
from reinitlab.errors import ReinitlabError

# (device, inode, size, mtime in ns, task) -> None when the file is good, else the error; the
# inode stands for the path, so a file reached through two paths (a symlink) is one file
_checked: dict[tuple[int, int, int, int, TaskSpec], str | None] = {}


def data_files(task: TaskSpec, data_cfg) -> list[Path]:
    """The local files a job of `task` reads (train, then every dev set); empty when its data
    comes from the Hugging Face hub."""
    if task.is_qa:
        root = squad_io.resolve_squad_dir(data_cfg.get("squad_dir"))
        if root is None:
            return []
        return [root / squad_io.split_file(task.qa.version, s) for s in ("train", "validation")]
    root = glue_io.resolve_glue_dir(data_cfg.get("glue_dir"))
    if root is None:
        return []
    folder = glue_io.task_dir(task, root)
    return [folder / task.train_tsv, *(folder / v.tsv for v in task.validation)]


def check_data_content(path: Path, task: TaskSpec) -> None:
    """Parse `path` as `task`'s data, as the job will, raising its error (file and line) when
    it cannot be used; each version of a file is read once per process."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return  # a missing file is the job checks' error (missing_file_error), said there
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, task)
    if key not in _checked:
        try:
            if task.is_qa:
                squad_io.read_squad_json(path, task.qa.version)
            else:
                glue_io.read_tsv(task, path)
            _checked[key] = None
        except ReinitlabError as e:
            _checked[key] = str(e)  # a bad file is refused for every job without a re-read
    if _checked[key] is not None:
        raise ReinitlabError(_checked[key])


def check_job_data(tasks, data_cfg) -> None:
    """Every local file of one job's tasks (the task, and any intermediate ones of its chain),
    checked (see `check_data_content`)."""
    for task in tasks:
        for path in data_files(task, data_cfg):
            check_data_content(path, task)
