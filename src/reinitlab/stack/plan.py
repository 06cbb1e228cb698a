"""Which jobs of a sweep train together: stack groups, the reasons a job trains solo, and
the memory a stack needs.

Jobs stack when their configs differ only in `reinit` (same task, model, seeds, data and
recipe): their batches are then identical, so one batch stream serves them all. A group is cut
into stacks of at most `members` jobs, fewer when the estimated memory of a stack would not
fit the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omegaconf import DictConfig

GIB = 1024**3


def why_solo(cfg: DictConfig) -> str | None:
    """Why this job cannot share a stack (None: it can)."""
    from reinitlab.data.tasks import TaskSpec

    if any(key not in cfg for key in ("task", "model", "reinit", "data", "trainer")):
        return "not a reinitlab training job"  # another Hydra app's job: run as it is
    if TaskSpec.from_config(cfg.task).is_qa:
        return "question answering trains solo"
    if list(cfg.get("intermediate") or []):
        return "an intermediate-task chain trains solo"
    if cfg.get("early_stopping"):
        return "early stopping would stop members at different epochs"
    probe = cfg.get("probe") or {}
    if probe.get("before") or probe.get("after"):
        return "layer probes train solo"
    if (cfg.get("head") or {}).get("layer") is not None:
        return "a classifier on a lower layer (head.layer) trains solo"
    trainer = cfg.get("trainer") or {}
    if str(trainer.get("devices", 1)) not in ("1", "auto") or str(
        trainer.get("strategy", "auto")
    ) not in ("auto",):
        return "multi-device training (trainer.devices/strategy) trains solo"
    return None


def stack_key(cfg: DictConfig) -> str:
    """Equal for jobs whose configs differ only in `reinit`: the jobs one stack may hold."""
    from reinitlab.sweep.jobkey import config_hash, identity_config

    return config_hash(identity_config(cfg, drop=("reinit",)))


def member_bytes(cfg: DictConfig) -> int:
    """Estimated memory of one member: fp32 weights, gradients and AdamW's two moments (16
    bytes a parameter) plus the activations of a full-length batch, per layer 34·s·b·h +
    5·a·s²·b bytes in 16-bit (Korthikanti et al., 2022), doubled for fp32."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from reinitlab.data.tasks import TaskSpec
    from reinitlab.training.models import load_config

    config = load_config(cfg.model, TaskSpec.from_config(cfg.task))
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    s, b = int(cfg.data.max_length), int(cfg.data.batch_size)
    h, a = config.hidden_size, config.num_attention_heads
    activations = config.num_hidden_layers * (34 * s * b * h + 5 * a * s * s * b) * 2
    return 16 * params + activations


def memory_budget(memory_gb: float | None, device: str) -> int:
    """Bytes a stack may use: `memory_gb`, else 90% of what is free now (the GPU's memory on
    cuda, available RAM on cpu)."""
    if memory_gb is not None:
        return int(float(memory_gb) * GIB)
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0] * 0.9)
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(int(info["MemAvailable"].split()[0]) * 1024 * 0.9)


@dataclass
class StackPlan:
    """The launch plan: stacks (lists of job positions) and solo jobs with their reasons."""

    stacks: list[list[int]] = field(default_factory=list)
    solo: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # splits, said on the console


def plan_stacks(
    cfgs: Sequence[DictConfig],
    members: int,
    budget: int | Callable[[], int],
    sizes: dict[str, int] | None = None,
) -> StackPlan:
    """Group `cfgs` (by position) into stacks of at most `members` that fit `budget` bytes (or
    `budget()`, asked only when some group has two jobs). `sizes` (stack key -> bytes per
    member) skips the estimate, for tests."""
    if members < 1:
        raise ValueError(f"hydra.launcher.members={members}: must be at least 1")
    plan = StackPlan()
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        reason = why_solo(cfg)
        if reason:
            plan.solo[i] = reason
        else:
            groups.setdefault(stack_key(cfg), []).append(i)
    for key, jobs in groups.items():
        if len(jobs) == 1:
            plan.solo[jobs[0]] = "no other job differs from it only in reinit"
            continue
        if callable(budget):
            budget = budget()
        per_member = (sizes or {}).get(key) or member_bytes(cfgs[jobs[0]])
        fit = min(members, budget // max(per_member, 1))
        if fit < 2:
            why = (
                f"two members need ~{2 * per_member / GIB:.1f} GiB, more than the "
                f"{budget / GIB:.1f} GiB budget (hydra.launcher.memory_gb)"
            )
            plan.solo.update({i: why for i in jobs})
            plan.notes.append(f"{len(jobs)} jobs train solo: {why}")
            continue
        if fit < min(members, len(jobs)):
            plan.notes.append(
                f"a stack of {min(members, len(jobs))} would need "
                f"~{min(members, len(jobs)) * per_member / GIB:.1f} GiB "
                f"(~{per_member / GIB:.2f} GiB a member) of the {budget / GIB:.1f} GiB budget: "
                f"stacks of at most {fit}"
            )
        count = math.ceil(len(jobs) / fit)  # as few stacks as fit, sizes as equal as can be
        size = math.ceil(len(jobs) / count)
        plan.stacks += [jobs[s : s + size] for s in range(0, len(jobs), size)]
    return plan


def describe(plan: StackPlan, labels: Sequence[str]) -> str:
    """The console lines that say how the jobs will train."""
    lines = [
        f"[reinitlab] stacked launcher: {sum(len(s) for s in plan.stacks)} jobs in "
        f"{len(plan.stacks)} stacks, {len(plan.solo)} solo"
    ]
    lines += [f"[reinitlab]   {note}" for note in plan.notes]
    reasons: dict[str, list[str]] = {}
    for i, why in plan.solo.items():
        reasons.setdefault(why, []).append(labels[i])
    for why, names in reasons.items():
        shown = ", ".join(names[:4]) + (f" (+{len(names) - 4})" if len(names) > 4 else "")
        lines.append(f"[reinitlab]   solo ({why}): {shown}")
    return "\n".join(lines)


__all__ = [
    "GIB",
    "StackPlan",
    "describe",
    "member_bytes",
    "memory_budget",
    "plan_stacks",
    "stack_key",
    "why_solo",
]
