"""Which input tokens drove a run's output: integrated gradients (Sundararajan et al., 2017) over the
input embeddings, for any run folder (every method, causal or encoder-decoder).

    attribute(run_dir, split, index)       -> dict: tokens, scores, output, completeness gap
    attribute_prompt(backbone, model, ...) -> the same for a loaded model and a prompt text
    save_attribution(result, run_dir)      -> RUN_DIR/attributions/<split>-<index>.json/.png/.html

A token's score is the sum over the embedding dimension of its IG attributions: the part of
log p(output | prompt) - log p(output | baseline prompt) that moving this token's embedding from
the baseline to its real value accounts for. Positive = made the output more likely.

Baseline (where the path starts; every position, virtual tokens included, starts from the same
vector): 'pad' (default) = the pad token's embedding, a prompt made of padding: a real input that
says nothing; 'mean' = the mean of the vocabulary's embeddings, an "average token"; 'zero' = all-zero
embeddings, the paper's baseline for its text models. Measured on SmolLM2, DialogSum test 42
(zero-shot, 51 output tokens), relative completeness gap with Gauss-Legendre: pad 0.95% at 32 steps
and 0.43% at 64; mean 17% at 32 and still 15% at 128 (f swings by hundreds of nats along that path).
Zero is degenerate on models whose first operation on the embeddings is a scale-invariant RMSNorm
with no position embedding added (Llama / SmolLM2, T5): along alpha * x each layer's norm switches on
at a different tiny alpha (tiny-llama: f moves 5 nats between alpha = 0 and 1e-6, 20 more by 1e-2),
so tens of points cannot integrate it (gaps of 20-100% at 64 steps). A model whose pad embedding is
all zeros (tiny-llama: padding_idx rows start at zero and get no gradient) is refused 'pad', since
that is 'zero'; use 'mean' there (gaps under 1% at 32 steps on the tiny models).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.evaluation.evaluate import load_run, load_run_config, rank_options
from peftlab.inspect.ig import RULES, integrated_gradients
from peftlab.inspect.path import EmbeddingPath
from peftlab.inspect.render import attribution_html, heatmap_png
from peftlab.inspect.target import greedy_output, output_logprob
from peftlab.models.backbone import Backbone
from peftlab.rundir.runio import write_json
from peftlab.tasks.base import SPLITS, build_task
from peftlab.tasks.loglik import continuation_ids

BASELINES = ("pad", "mean", "zero")


def baseline_embeddings(path: EmbeddingPath, x: torch.Tensor, baseline: str, pad_id: int) -> torch.Tensor:
    if baseline == "zero":
        return torch.zeros_like(x)
    row = path.token_embedding(pad_id) if baseline == "pad" else path.mean_embedding()
    if baseline == "pad" and not row.any():
        raise PeftlabError(
            f"--baseline pad: this model's pad token (id {pad_id}) has an all-zero embedding, so the "
            "pad baseline would be the zero baseline, which RMSNorm models cannot integrate; "
            "use --baseline mean"
        )
    return row.to(x.dtype).expand_as(x)


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each token as text (decoded alone; a byte that is part of a longer character shows as its token name)."""
    out = []
    for i in ids:
        text = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        out.append(text if text and "\ufffd" not in text else str(tokenizer.convert_ids_to_tokens(i)))
    return out


def attribute_prompt(
    backbone: Backbone,
    model: nn.Module,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    max_source_tokens: int = 512,
    output_ids: list[int] | None = None,
    steps: int = 32,
    rule: str = "gauss-legendre",
    baseline: str = "pad",
    batch_size: int = 4,
    progress=None,
) -> dict:
    """IG attributions of log p(output | prompt) to the prompt's tokens (and virtual tokens).
    ``output_ids`` default: the model's greedy output."""
    if rule not in RULES:
        raise PeftlabError(f"--rule: unknown quadrature rule '{rule}'; choose from {', '.join(RULES)}")
    if baseline not in BASELINES:
        raise PeftlabError(f"--baseline: unknown baseline '{baseline}'; choose from {', '.join(BASELINES)}")
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()  # no dropout: f must be a deterministic function of the embeddings
    prompt_ids = backbone.prompt_ids(prompt, max_source_tokens)
    if output_ids is None:
        output_ids = greedy_output(backbone, model, prompt_ids, max_new_tokens)
    path = EmbeddingPath(model, backbone.kind)
    try:
        with path.active():
            x, f, virtual = output_logprob(backbone, model, path, prompt_ids, output_ids)
            base = baseline_embeddings(path, x, baseline, backbone.tokenizer.pad_token_id)
            ig = integrated_gradients(f, x, base, steps=steps, rule=rule, batch_size=batch_size, progress=progress)
    finally:
        model.train(was_training)
    tok = backbone.tokenizer
    return {
        "tokens": [f"<v{i}>" for i in range(virtual)] + token_texts(tok, prompt_ids),
        "token_ids": [None] * virtual + list(prompt_ids),
        "scores": ig.attributions.sum(-1).tolist(),
        "virtual_tokens": virtual,
        "output": tok.decode(output_ids, skip_special_tokens=True).strip(),
        "output_tokens": token_texts(tok, output_ids),
        "f_input": ig.f_input,
        "f_baseline": ig.f_baseline,
        "attribution_sum": ig.total,
        "completeness_gap": ig.gap,
        "completeness_gap_relative": ig.relative_gap,
        "steps": steps,
        "rule": rule,
        "baseline": baseline,
        "seconds": time.perf_counter() - t0,
    }


def predicted_option_ids(backbone: Backbone, model: nn.Module, task, example, max_source_tokens: int) -> list[int]:
    """Classify / multiple choice: the tokens of the option the model picks (as scored), not free text."""
    pick = rank_options(backbone, model, task, [example], 1, max_source_tokens)[0]
    return continuation_ids(backbone, pick)


def attribute(
    run_dir: str | Path,
    split: str = "test",
    index: int = 0,
    *,
    steps: int = 32,
    rule: str = "gauss-legendre",
    baseline: str = "pad",
    batch_size: int = 4,
    progress=None,
    log=None,
) -> dict:
    """Attributions for example ``index`` of ``split`` of a run's task, with the run's model and adapter
    (loaded in float32: IG sums many small gradient terms)."""
    if split not in SPLITS:
        raise PeftlabError(f"--split: unknown split '{split}'; choose from {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)  # raises "not a run folder" before any model loads
    task = build_task(cfg.task)
    examples = task.split(split)
    if not 0 <= index < len(examples):
        raise PeftlabError(
            f"--example {index} is out of range: the {split} split of task '{task.name}' has "
            f"{len(examples)} examples (indices 0..{len(examples) - 1})"
        )
    example = examples[index]
    quiet = log or (lambda *_: None)
    cfg, backbone = load_run(run_dir, model_cfg=cfg.model.model_copy(update={"dtype": "float32"}), log=quiet)
    model, src_max = backbone.model, cfg.task.max_source_tokens
    output_ids = None
    if task.output_type != "generate":
        output_ids = predicted_option_ids(backbone, model, task, example, src_max)
    result = attribute_prompt(
        backbone,
        model,
        example.prompt,
        max_new_tokens=task.max_new_tokens,
        max_source_tokens=src_max,
        output_ids=output_ids,
        steps=steps,
        rule=rule,
        baseline=baseline,
        batch_size=batch_size,
        progress=progress,
    )
    return {
        "run": cfg.run_name(),
        "run_dir": str(run_dir),
        "method": cfg.method.name,
        "model": cfg.model.name,
        "task": task.name,
        "split": split,
        "index": index,
        "id": example.id,
        "references": example.references,
        **result,
    }


def save_attribution(result: dict, run_dir: str | Path) -> dict[str, Path]:
    """Write <split>-<index>.json, .png (heatmap) and .html (snippet) into RUN_DIR/attributions/."""
    folder = Path(run_dir) / "attributions"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{result['split']}-{result['index']}"
    paths = {"json": folder / f"{stem}.json", "png": folder / f"{stem}.png", "html": folder / f"{stem}.html"}
    write_json(paths["json"], result)
    heatmap_png(result, paths["png"])
    paths["html"].write_text(attribution_html(result), encoding="utf-8")
    return paths
