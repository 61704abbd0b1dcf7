"""Forgetting: how much worse the fine-tuned model predicts general text than the model it started from.

The measure peft's method comparison reports: the language-modelling loss (mean negative
log-likelihood per token) on a fixed sample of text, after training minus before. Positive means the
model forgot; a method that leaves the base weights alone and adds nothing at inference forgets
nothing. The "before" loss is the base model's, measured before the method is applied (prompt tuning
and other non-zero-initialised methods change the output even untrained); the "after" loss is the
trained model's, adapter active, as it would be deployed.

The text is a task's examples, each its prompt and target joined by a newline (configured with
``forgetting: {task: ..., split: test, examples: 200}``), cut to ``max_tokens`` tokens. Decoder-only
models score every token after the first; encoder-decoder models, which are not language models,
read the first half of a text's tokens and score the second half (a prefix-LM loss).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from peftlab.config import ExperimentConfig, ForgettingConfig
from peftlab.console import console, progress
from peftlab.models.backbone import Backbone
from peftlab.models.kind import IGNORE, output_head, right_pad
from peftlab.rundir.runio import atomic_write_text
from peftlab.rundir.summary import Forgetting
from peftlab.tasks.base import build_task


def sample(cfg: ForgettingConfig, log=None) -> list[str]:
    """The texts: the first ``examples`` examples of the task's split, prompt and target joined."""
    task = build_task(cfg.task, log=log)
    return [f"{e.prompt}\n{e.target}" for e in task.split(cfg.split)[: cfg.examples]]


def _encode(backbone: Backbone, text: str, max_tokens: int) -> tuple[list[int], list[int]]:
    """(input ids, label ids) of one text, split as the model's kind scores a text (``forgetting_split``:
    the same ids for a decoder-only model, halves for an encoder-decoder)."""
    return backbone.kind.forgetting_split(backbone.tokenizer(text)["input_ids"][:max_tokens])


@torch.no_grad()
def lm_loss(
    backbone: Backbone, model: nn.Module, texts: list[str], max_tokens: int, batch_size: int = 8, label: str = "LM loss"
) -> float:
    """Mean NLL per scored token of ``texts`` under ``model`` (right-padded batches, padding ignored)."""
    pad = backbone.tokenizer.pad_token_id or 0
    encoded = [_encode(backbone, t, max_tokens) for t in texts]
    encoded.sort(key=lambda pair: len(pair[0]))  # similar lengths together: less padding
    total, count = 0.0, 0
    training = model.training
    model.eval()
    try:
        with progress() as bar:  # 200 texts of a 135M model take minutes on a CPU
            tid = bar.add_task(label, total=len(encoded), info="")
            for start in range(0, len(encoded), batch_size):
                chunk = encoded[start : start + batch_size]
                inputs, mask = right_pad([i for i, _ in chunk], pad)
                labels = right_pad([lab for _, lab in chunk], IGNORE)[0]
                batch = {"input_ids": inputs, "attention_mask": mask, "labels": labels}
                batch = {k: v.to(backbone.device) for k, v in batch.items()}
                # The training loss's own computation (from the logits, head on the scored positions
                # only), not the model's .loss: a peft wrapper may add to that (AdaLoRA its regulariser).
                with backbone.numerics(), torch.no_grad():
                    summed = float(backbone.kind.loss_sum(model, output_head(model), batch))
                total, count = total + summed, count + backbone.kind.labelled_tokens(batch)
                bar.update(tid, advance=len(chunk))
    finally:
        model.train(training)
    return total / count if count else math.nan


def base_loss(cfg: ExperimentConfig, numerics: str, compute: Callable[[], float]) -> float:
    """The base model's loss on the sample, computed once per output folder: every run of a comparison
    starts from the same model and reads the same texts in the same dtype, so they share it (a file
    under output_dir/.forgetting, named by a hash of the model, the forgetting section and the
    ``numerics`` the matmuls run in: train.precision auto resolves per machine). It is a full pass over
    the sample, as long as the trained model's."""
    key = json.dumps(
        # in_domain names the measure, it does not change the texts: left out, so earlier files still count
        [cfg.model.model_dump(mode="json"), cfg.forgetting.model_dump(mode="json", exclude={"in_domain"}), numerics],
        sort_keys=True,
    )
    path = Path(cfg.output_dir) / ".forgetting" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        try:
            return float(json.loads(path.read_text())["loss_before"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged file: measure again and replace it
    loss = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"loss_before": loss, "key": json.loads(key)}) + "\n")
    return loss


def measure(cfg: ExperimentConfig, backbone: Backbone, texts: list[str], before: float) -> Forgetting | None:
    """The measure on the trained model, against ``before`` (None when the config does not ask for it)."""
    if not cfg.forgetting:
        return None
    f = cfg.forgetting
    start = time.perf_counter()
    after = lm_loss(backbone, backbone.model, texts, f.max_tokens, label="forgetting: trained model")
    console.print(f"forgetting: LM loss on {len(texts)} {f.task.name} texts {before:.4f} -> {after:.4f}")
    return Forgetting(
        task=f.task.name,
        split=f.split,
        examples=len(texts),
        loss_before=before,
        loss_after=after,
        seconds=round(time.perf_counter() - start, 3),
        in_domain=f.in_domain,
    )
