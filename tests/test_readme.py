"""The README's commands work as printed: each `python train.py` / `reinitlab` line of its code
blocks runs from the checkout after `make install`, with no exports, with small additions only
where it would train for long (sweeps: a dry run, which still checks every job; single runs:
`debug=fast`; probes: a small subset). Only a command whose line the README marks `(hub)`
may need the model hub, and it must then be refused at once with the reason when the hub
cannot be used; any other command refused for the hub fails."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import GLUE, REPO, needs_glue

pytestmark = pytest.mark.slow

RUNNABLE = ("python train.py", "reinitlab-train", "reinitlab ")
HUB_REFUSAL = "is not in the local Hugging Face cache and the hub is"


def readme_commands(text: str) -> list[str]:
    """Command lines of the README's shell code blocks (```, ```sh, ```bash) and indented
    code lines, comments cut, placeholders (`<sweep>`, `...`) left out."""
    return [command for command, _ in readme_commands_with_notes(text)]


def readme_commands_with_notes(text: str) -> list[tuple[str, str]]:
    """(command, the comment printed after it on its line) for `readme_commands`."""
    lines = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if lang in ("", "sh", "bash"):
            lines += body.splitlines()
    outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    lines += [ln for ln in outside.splitlines() if re.match(r"^ {4,}\S", ln)]
    commands = []
    for line in lines:
        line, *note = (part.strip() for part in re.split(r"\s+#", line, maxsplit=1))
        note = note[0] if note else ""
        if line.startswith(RUNNABLE) and "<" not in line and "..." not in line:
            commands.append((line, note))
    return commands


def needs_the_hub(note: str) -> bool:
    """The README says so on the command's line (`# ... (hub)`)."""
    return "(hub)" in note


NOTED = readme_commands_with_notes((REPO / "README.md").read_text())
COMMANDS = [command for command, _ in NOTED]
HUB_COMMANDS = {command for command, note in NOTED if needs_the_hub(note)}


def test_the_readme_has_commands_to_run():
    assert len(COMMANDS) >= 15, COMMANDS
    assert "python train.py task=cola model=minilm-l6 reinit.k=5" in COMMANDS
    # only the commands the README marks as needing the hub may be refused for it
    assert {
        "python train.py -m task=cola,stsb 'reinit.k=range(1,13)'",
        "python train.py task=rte intermediate=[mnli,mrpc]",
        "python train.py -m experiment=paper_intermediate",
    } == HUB_COMMANDS


def test_hub_notes_are_read_from_the_command_line_only():
    text = (
        "```\n"
        "python train.py task=cola   # BERT-base (hub)\n"
        "python train.py task=rte model=minilm-l6   # offline; unlike the hub line above\n"
        "python train.py task=stsb\n"
        "```\n"
    )
    assert readme_commands_with_notes(text) == [
        ("python train.py task=cola", "BERT-base (hub)"),
        ("python train.py task=rte model=minilm-l6", "offline; unlike the hub line above"),
        ("python train.py task=stsb", ""),
    ]
    assert [needs_the_hub(n) for _, n in readme_commands_with_notes(text)] == [True, False, False]


def as_run(command: str, tmp: Path) -> list[str]:
    """The command as printed, made short: a sweep becomes its dry run, one job `debug=fast`."""
    args = shlex.split(command)
    bindir = Path(sys.executable).parent
    if args[0] == "python":
        args[0] = sys.executable
    elif args[0] in ("reinitlab", "reinitlab-train"):
        args[0] = str(bindir / args[0])
    if "--help" in args or "--cfg" in args:
        return args
    if args[0].endswith("reinitlab") and args[1] == "probe":
        return [*args, "data.max_train_samples=64", "probe.max_dev_samples=64",
                f"hydra.run.dir={tmp / 'run'}"]  # fmt: skip
    if args[0].endswith("reinitlab"):
        return args
    sweep = "-m" in args or any(
        a.startswith("experiment=") and a != "experiment=demo" for a in args
    )
    if sweep or "experiment=demo" in args:
        return [*args, "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={tmp / 'sweep'}"]
    return [*args, "debug=fast", f"hydra.run.dir={tmp / 'run'}"]


@needs_glue
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_works_as_printed(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "GLUE_DIR")}
    if not (REPO / "conf" / "site" / "local.yaml").is_file():
        env["GLUE_DIR"] = str(GLUE)  # `make install` did not record it in this checkout
    env["REINITLAB_CACHE_DIR"] = os.environ.get("REINITLAB_CACHE_DIR", str(tmp_path / "cache"))
    env["WANDB_MODE"] = "offline"
    out = subprocess.run(as_run(command, tmp_path), cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    both = out.stdout + out.stderr
    if out.returncode == 2 and HUB_REFUSAL in both:
        # a command the README presents as offline must not need the hub
        assert command in HUB_COMMANDS, (
            "refused for the hub, but the README has no (hub) note (model=mpnet-base needs "
            f"`make install-mpnet` first, which `make test-slow` runs):\n{both[-2000:]}"
        )
        assert "Traceback" not in both
        return  # needs the hub, as the README says, and says so before anything starts
    assert out.returncode == 0, both[-3000:]
    if "hydra.sweeper.dry_run=true" in as_run(command, tmp_path):
        assert "jobs would run" in out.stdout
