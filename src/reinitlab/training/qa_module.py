"""LightningModule for extractive question answering (SQuAD): the GLUE module's optimizer,
schedule and records, with start/end logits post-processed into answers and scored by the
official SQuAD evaluation after every dev pass."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from reinitlab.data.squad_eval import squad_evaluate
from reinitlab.data.squad_features import QAFeatures, postprocess_predictions
from reinitlab.data.squad_io import QAExample
from reinitlab.errors import ReinitlabError
from reinitlab.training.module import GlueClassifier

log = logging.getLogger("reinitlab")

# Why optim.remove_padding falls back to "off" for QA (logged once per run).
NO_PADDING_REMOVAL = (
    "packing and the length split compute a sequence-level loss from one logit row per "
    "sequence; QA needs per-token start/end logits, which they do not unpack"
)
# Logged per dev pass: the official evaluation's values, as fractions (GLUE's scale), plus the
# best-threshold values and their null-odds thresholds (SQuAD 2.0).
FRACTIONS = ("f1", "exact", "HasAns_f1", "HasAns_exact", "NoAns_f1", "NoAns_exact",
             "best_f1", "best_exact")  # fmt: skip
THRESHOLDS = ("best_f1_thresh", "best_exact_thresh")


class QuestionAnswering(GlueClassifier):
    """Fine-tunes an `AutoModelForQuestionAnswering`; logs `val/f1`, `val/exact`, the
    HasAns/NoAns breakdown, best-threshold values and `val/primary` (the task's primary
    metric, F1). The dev questions and features (`dev`) map logits back to answer texts."""

    def __init__(self, model, task, dev: tuple[Sequence[QAExample], QAFeatures], **optim):
        remove_padding = optim.get("remove_padding", "pack")
        super().__init__(model, task, **optim)  # validates remove_padding
        if remove_padding != "off":
            log.info("optim.remove_padding=%s is not used for QA (%s); using off",
                     remove_padding, NO_PADDING_REMOVAL)  # fmt: skip
        self.remove_padding = "off"
        self.dev_examples, self.dev_features = dev
        # feature index -> its start / end logits over its own tokens, for the current dev pass
        self.dev_start: dict[int, np.ndarray] = {}
        self.dev_end: dict[int, np.ndarray] = {}

    @staticmethod
    def _inputs(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if k != "labels"}

    def training_step(self, batch, batch_idx):
        """The mean of the start and end cross-entropy (the model's own QA loss)."""
        loss = self.model(**self._inputs(batch)).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Keep each feature's start/end logits over its own tokens (padding cut off)."""
        inputs = {k: v for k, v in self._inputs(batch).items() if not k.endswith("_positions")}
        out = self.model(**inputs)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        starts = out.start_logits.float().cpu().numpy()
        ends = out.end_logits.float().cpu().numpy()
        for row, index in enumerate(batch["labels"].tolist()):
            self.dev_start[index] = starts[row, : lengths[row]]
            self.dev_end[index] = ends[row, : lengths[row]]

    def evaluate(self) -> dict[str, float]:
        """Post-process the collected logits and score them (official SQuAD evaluation). Only
        questions whose every feature was seen are scored (all of them unless the trainer limits
        the dev batches)."""
        features = self.dev_features
        seen = set(self.dev_start)
        missing = {features.example_index[f] for f in range(len(features)) if f not in seen}
        keep = [e for e in range(len(self.dev_examples)) if e not in missing]
        if not keep:
            raise ReinitlabError(
                "no dev question had all of its features evaluated (trainer.limit_val_batches "
                "too small for SQuAD's features?)"
            )
        remap = {e: n for n, e in enumerate(keep)}
        rows = [f for f in range(len(features)) if features.example_index[f] in remap]
        subset = QAFeatures(
            input_ids=[features.input_ids[f] for f in rows],
            token_type_ids=None,
            example_index=[remap[features.example_index[f]] for f in rows],
            offsets=[features.offsets[f] for f in rows],
            cls_index=[features.cls_index[f] for f in rows],
            start_positions=[features.start_positions[f] for f in rows],
            end_positions=[features.end_positions[f] for f in rows],
        )
        examples = [self.dev_examples[e] for e in keep]
        qa = self.task.qa
        preds, odds = postprocess_predictions(
            examples,
            subset,
            [self.dev_start[f] for f in rows],
            [self.dev_end[f] for f in rows],
            n_best=qa.n_best,
            max_answer_length=qa.max_answer_length,
            null_threshold=qa.null_threshold,
            with_negative=qa.with_negative,
        )
        answers = {e.id: list(e.answers) for e in examples}
        search = None
        if qa.with_negative:  # every question's best span, for the best-threshold search
            search, _ = postprocess_predictions(
                examples, subset, [self.dev_start[f] for f in rows], [self.dev_end[f] for f in rows],
                n_best=qa.n_best, max_answer_length=qa.max_answer_length,
                null_threshold=math.inf,
            )  # fmt: skip
        # na_prob_thresh=inf: the predictions are already thresholded (qa.null_threshold); the
        # null odds only rank the best spans in the best-threshold search.
        out = squad_evaluate(
            answers,
            preds,
            na_probs=odds if qa.with_negative else None,
            na_prob_thresh=math.inf,
            search_preds=search,
        )
        metrics = {k: out[k] / 100.0 for k in FRACTIONS if k in out}
        metrics.update({k: float(out[k]) for k in THRESHOLDS if k in out and math.isfinite(out[k])})
        metrics["questions"] = float(len(examples))
        return metrics

    def on_validation_epoch_end(self) -> None:
        """Score the dev pass, log `val/<metric>` and `val/primary`, append to `history` (not
        for the sanity check, which sees only a few features)."""
        try:
            if self.trainer.sanity_checking:
                return
            metrics = self.evaluate()
        finally:
            self.dev_start, self.dev_end = {}, {}
        record = {f"val/{k}": v for k, v in metrics.items()}
        record["val/primary"] = record[f"val/{self.task.primary_metric}"]
        primary = {"val/primary": record["val/primary"]}
        self.log_dict({k: v for k, v in record.items() if k != "val/primary"},
                      add_dataloader_idx=False)  # fmt: skip
        self.log_dict(primary, prog_bar=True, add_dataloader_idx=False)
        self.history.append(
            {"epoch": self.current_epoch, "step": self.global_step, "metrics": record}
        )
