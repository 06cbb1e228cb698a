"""Tiny random models: one factory for every family the tests build, and a padded batch for them.

`tiny_config(family, ...)` takes family-neutral sizes (layers, hidden, heads, intermediate,
dropout, head_dropout) and writes them under each family's own config names; any other keyword
is passed to the config class as is (`max_position_embeddings=40`, `pad_token_id=0`, ...).
`tiny_model(family, task_kind, ...)` builds the model from it with `transformers`' Auto classes.

Defaults: 2 layers, hidden 32, 4 heads, FFN 2 x hidden (GPT-2: its own 4 x hidden), a
vocabulary of `VOCAB` ids, dropout off, 2 labels, torch seeded with 0, training mode. A test
that needs a library default passes `None` (`dropout=None`: the family's own dropout;
`seed=None`: the global RNG as it stands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ENCODERS = ("bert", "roberta", "electra", "distilbert", "mpnet")  # the families reinitlab supports
FAMILIES = (*ENCODERS, "gpt2")  # gpt2: a model reinitlab refuses, for the refusals' tests
VOCAB = 120
TASK_KINDS = ("classification", "causal-lm")


def tiny_config(
    family: str = "bert",
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    intermediate: int | None = None,
    vocab_size: int = VOCAB,
    dropout: float | None = 0.0,
    head_dropout: float | None = None,
    num_labels: int = 2,
    **overrides: Any,
):
    """A tiny `family` config. `dropout` sets every dropout of the family's config (for BERT-like
    families the classifier's follows the hidden one unless `head_dropout` is given; MPNet's
    classifier has none of its own); ELECTRA's embeddings are `hidden // 2` wide. `overrides` win over everything derived here."""
    import transformers as tf

    ffn = 2 * hidden if intermediate is None else intermediate
    if family == "distilbert":
        cls = tf.DistilBertConfig
        kw: dict[str, Any] = dict(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=ffn)
        if dropout is not None:
            kw |= dict(dropout=dropout, attention_dropout=dropout, seq_classif_dropout=dropout)
        if head_dropout is not None:
            kw["seq_classif_dropout"] = head_dropout
    elif family == "gpt2":
        cls = tf.GPT2Config
        kw = dict(n_layer=layers, n_embd=hidden, n_head=heads)
        if intermediate is not None:
            kw["n_inner"] = intermediate
        if dropout is not None:
            kw |= dict(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
        if head_dropout is not None:
            kw["summary_first_dropout"] = head_dropout
    elif family in ("bert", "roberta", "electra"):
        cls = {"bert": tf.BertConfig, "roberta": tf.RobertaConfig, "electra": tf.ElectraConfig}
        cls = cls[family]
        kw = dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ffn,
        )
        if dropout is not None:
            kw |= dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        if head_dropout is not None:
            kw["classifier_dropout"] = head_dropout
        if family == "electra":
            kw["embedding_size"] = hidden // 2
    elif family == "mpnet":  # no token types; positions start after padding index 1
        cls = tf.MPNetConfig
        kw = dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ffn,
        )
        if dropout is not None:
            kw |= dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        if head_dropout is not None and head_dropout != dropout:
            raise ValueError("MPNet's classifier has no dropout of its own: it uses `dropout`")
    else:
        raise ValueError(f"no tiny {family!r} model: the families are {', '.join(FAMILIES)}")
    return cls(**{**kw, "vocab_size": vocab_size, "num_labels": num_labels, **overrides})


def tiny_model(
    family: str = "bert",
    task_kind: str = "classification",
    *,
    seed: int | None = 0,
    far_from_init: bool = False,
    train: bool = True,
    **config: Any,
):
    """A tiny random `family` model: a sequence classifier, or with `task_kind="causal-lm"` a
    language model. `config` goes to `tiny_config`.

    `seed` seeds torch before the weights are drawn. `far_from_init` then adds N(0.3, 0.5^2)
    noise to every parameter, so that "pretrained" weights are far from any initializer and a
    reset is visible in every element. `train=False` returns it in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = {
        "classification": AutoModelForSequenceClassification,
        "causal-lm": AutoModelForCausalLM,
    }
    if task_kind not in auto:
        raise ValueError(f"task_kind={task_kind!r}: one of {', '.join(TASK_KINDS)}")
    if seed is not None:
        torch.manual_seed(seed)
    model = auto[task_kind].from_config(tiny_config(family, **config))
    if far_from_init:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5 + 0.3)
    return model.train(train)


def padded_batch(
    lengths: list[int], num_labels: int, pad_id: int = 0, token_types: bool = True
) -> dict[str, torch.Tensor]:
    """A right-padded batch for a tiny model: rows of the given lengths (ids in 2..VOCAB-1, so
    never a pad id inside), attention mask, token types (second half of each row 1) and labels
    (regression targets in [0, 5) when num_labels == 1); the same batch for the same lengths."""
    import torch

    g = torch.Generator().manual_seed(len(lengths))
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, :n] = torch.randint(2, VOCAB, (n,), generator=g)  # never a pad id inside
        mask[r, :n] = 1
        types[r, n // 2 : n] = 1
    if num_labels == 1:
        labels = torch.rand(len(lengths), generator=g) * 5
    else:
        labels = torch.randint(0, num_labels, (len(lengths),), generator=g)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if token_types:
        batch["token_type_ids"] = types
    return batch
