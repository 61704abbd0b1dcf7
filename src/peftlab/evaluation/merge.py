"""`peftlab merge RUN_DIR OUT_DIR`: fold a run's adapter into the base weights and save a plain model.

Only methods whose update is a change of existing weights can be folded in: LoRA (W + B A * alpha/r,
Hu et al., 2021, section 4.1: "no additional inference latency"), IA3 (a per-channel rescaling of
W, Liu et al., 2022) and the peft types whose update is a weight change (LoHa, LoKr, VeRA, OFT,
BOFT, FourierFT, LN tuning, AdaLoRA: peft_tuner.MERGEABLE). The merged folder is an ordinary
transformers model (safetensors + config + tokenizer) that loads with ``AutoModelForCausalLM`` /
``AutoModelForSeq2SeqLM`` and needs neither peft nor peftlab. Other methods add modules or virtual
tokens that have no weight to fold into. Hybrids are refused too: their components' modules and
virtual tokens have nothing to fold into, and no two of them may wrap the same Linear layers.

The merge runs on CPU in float32, so rounding does not depend on the training device's dtype.
"""

from __future__ import annotations

from pathlib import Path

import torch

from peftlab.errors import PeftlabError
from peftlab.evaluation.evaluate import load_run, load_run_config
from peftlab.methods import REGISTRY, get_method, method_options
from peftlab.methods.peft_tuner import MERGEABLE


def merge_run(run_dir: Path, out_dir: Path, log=print) -> Path:
    """Load RUN_DIR's base model + adapter, merge, save into OUT_DIR (must be new or empty)."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg = load_run_config(run_dir)
    if not get_method(cfg.method.name).merges(method_options(cfg.method)):
        mergeable = [m.name for m in REGISTRY.values() if m.mergeable]
        kind = cfg.method.name + (f" type {cfg.method.type}" if cfg.method.name == "peft" else "")
        raise PeftlabError(
            f"{run_dir}: a '{kind}' run cannot be merged into the base weights; merge works for "
            f"{' and '.join(mergeable)} runs and peft types {', '.join(sorted(MERGEABLE))} (their update is "
            "a change of existing weights)"
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PeftlabError(f"{out_dir}: already exists and is not an empty folder; choose a new output folder")
    _, backbone = load_run(
        run_dir, model_cfg=cfg.model.model_copy(update={"dtype": "float32"}), device=torch.device("cpu"), log=log
    )
    merged = backbone.model.merge_and_unload()  # peft: W <- W + delta for every adapted layer, wrappers removed
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))  # transformers 5 writes safetensors only
    backbone.tokenizer.save_pretrained(str(out_dir))
    log(f"merged {cfg.method.name} run {run_dir} into {out_dir}")
    return out_dir
