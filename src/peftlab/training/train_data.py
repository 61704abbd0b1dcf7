"""What a run trains on: examples tokenized on first use, a resumable length-grouped loader of
global micro-batches, and the budget (an epoch counted in optimizer steps of this loader)."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader

from peftlab.config import ExperimentConfig
from peftlab.console import console
from peftlab.errors import PeftlabError
from peftlab.evaluation.evaluate import limit
from peftlab.models.backbone import Backbone
from peftlab.tasks.base import Task
from peftlab.training.batching import EpochSampler, ShardedCollate
from peftlab.training.budget import Budget
from peftlab.training.train_state import TrainState


class EncodedExamples(torch.utils.data.Dataset):
    """Tokenizes an example the first time it is drawn: a 40-step run on a 12k-example split
    should not pay for tokenizing all 12k."""

    def __init__(self, examples, backbone, max_source_tokens: int, max_target_tokens: int):
        self.examples, self.backbone = examples, backbone
        self.limits = (max_source_tokens, max_target_tokens)
        self.cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        if i not in self.cache:
            e = self.examples[i]
            self.cache[i] = self.backbone.encode(e.prompt, e.target, *self.limits)
        return self.cache[i]


def build_loader(
    cfg: ExperimentConfig, processes: int, backbone: Backbone, task: Task
) -> tuple[DataLoader, EpochSampler, int]:
    """(loader of global micro-batches, its resumable sampler, examples skipped as too long)."""
    examples, skipped = limit(task.split("train"), cfg.train.max_train_examples), 0
    if cfg.task.too_long == "skip":
        kept = [e for e in examples if not backbone.too_long(e.prompt, cfg.task.max_source_tokens)]
        skipped = len(examples) - len(kept)
        console.print(
            f"too_long: skip: {skipped} of {len(examples)} training examples are over "
            f"{cfg.task.max_source_tokens} tokens and are skipped"
        )
        examples = kept
    features = EncodedExamples(examples, backbone, cfg.task.max_source_tokens, cfg.task.max_target_tokens)
    per_step = cfg.train.batch_size * processes  # one loader batch = the global micro-batch
    # Characters stand in for tokens when grouping by length: no need to tokenize the whole split.
    lengths = [len(e.prompt) + len(e.target) for e in examples] if cfg.train.group_by_length else None
    # Grouped in units of a whole optimizer step: how a step is split (micro-batches, processes)
    # does not change which examples it holds.
    sampler = EpochSampler(len(features), cfg.seed, lengths, per_step * cfg.train.grad_accum)
    # Its own generator: a DataLoader iterator draws a seed when it starts (every epoch, and once
    # more on resume); from the global RNG that would shift dropout and break exact resumption.
    loader = DataLoader(
        features,
        batch_size=per_step,
        sampler=sampler,
        drop_last=processes > 1,
        collate_fn=ShardedCollate(backbone.collate, cfg.train.batch_size, processes),
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    if processes > 1 and len(loader) == 0:
        raise PeftlabError(
            f"{len(features)} training examples cannot fill one batch of {cfg.train.batch_size} "
            f"per process x {processes} processes; lower train.batch_size"
        )
    return loader, sampler, skipped


def make_budget(cfg: ExperimentConfig, loader: DataLoader, state: TrainState) -> Budget:
    """The config's budget, reading what is spent from ``state`` (the run's counters)."""
    kind, amount = cfg.train.budget()
    if kind == "epochs":  # an epoch is a number of optimizer steps over this loader
        kind, amount = "steps", math.ceil(amount * max(len(loader) // cfg.train.grad_accum, 1))
    return Budget(kind, amount, state)
