"""Any other tuner peft implements, by its peft type: ``{name: peft, type: LOHA, r: 8, alpha: 16}``.

peftlab's own methods cover what it must control itself (LoRA and DoRA, IA3, prompt and prefix
tuning, adapters, hybrids). Everything else peft offers -- and whatever later peft releases add --
runs through this pass-through in peftlab's loop, budgets, FLOP count and report:

    LOHA       Hyeon-Woo et al., 2022. FedPara (LoHa: Hadamard product of two low-rank products). arXiv:2108.06098.
    LOKR       Yeh et al., 2024. LyCORIS (LoKr: Kronecker product). arXiv:2309.14859.
    VERA       Kopiczko et al., 2024. VeRA: Vector-based Random Matrix Adaptation. arXiv:2310.11454.
    OFT        Qiu et al., 2023. Controlling Text-to-Image Diffusion by Orthogonal Finetuning. arXiv:2306.07280.
    BOFT       Liu et al., 2024. Parameter-Efficient Orthogonal Finetuning via Butterfly Factorization.
               arXiv:2311.06243.
    FOURIERFT  Gao et al., 2024. Parameter-Efficient Fine-Tuning with Discrete Fourier Transform. arXiv:2405.03003.
    LN_TUNING  Zhao et al., 2023. Tuning LayerNorm in Attention. arXiv:2312.11420.
    P_TUNING   Liu et al., 2021. GPT Understands, Too (P-tuning: prompt encoder). arXiv:2103.10385.

The options after ``type`` are the fields of that type's peft config class, checked by name against
``dataclasses.fields`` of the class (a misspelt one gets a suggestion and the list of allowed ones);
their values are checked by constructing the config, whose error is reported with the type. Fields
peftlab sets itself (task_type, inference_mode, ...) are refused.

Refused types, each with the reason: those peftlab has as its own methods (their extra handling
lives there), prompt-learning types other than P-tuning (peftlab's decoder places the virtual
tokens of PROMPT_TUNING, P_TUNING and PREFIX_TUNING only: models/decode.py).

ADALORA (Zhang et al., 2023, arXiv:2303.10512) runs with the loop's help (methods/adalora.py): its
rank allocator after every optimizer step, its orthogonal regulariser added to the loss, its
allocator state in the checkpoint. It needs ``total_step`` (its rank schedule's length) and cannot
be a hybrid component (the allocator lives on peft's outer AdaLoRA model, which hybrids leave out).

FLOPs: flops.py counts the Linear calls and attention by structure; the work a tuner does inside
its own forward (LoHa and LoKr build a dense delta weight and apply it with a second full-size
matmul per token; VeRA, OFT, BOFT and FourierFT likewise) is measured once per distinct layer with
torch's FlopCounterMode (flops_tuners.py). The count equals FlopCounterMode on the tiny models for
every type tested (tests/methods/test_peft_tuner.py); P-tuning is within 0.2%.

Saved in peft's format, so the folder loads with ``peft.PeftModel.from_pretrained``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from torch import nn

from peftlab.errors import PeftlabError, suggest
from peftlab.methods import adalora, peft_common
from peftlab.methods.base import Hook, Method

# What peftlab decides itself: the model kind, training mode, and what trains besides the tuner.
RESERVED = {
    "task_type": "set from the model (causal or seq2seq)",
    "peft_type": "given by method.type",
    "inference_mode": "peftlab trains, then loads for inference itself",
    "base_model_name_or_path": "the run's model",
    "revision": "the run's model",
    "auto_mapping": "peft's own bookkeeping",
    "peft_version": "peft's own bookkeeping",
    "modules_to_save": "would train copies of base layers besides the tuner; use a hybrid or full fine-tuning",
}
OWN_METHODS = {"LORA": "lora", "IA3": "ia3", "PROMPT_TUNING": "prompt_tuning", "PREFIX_TUNING": "prefix_tuning"}
PROMPT_TYPES_DECODED = {"P_TUNING"}  # prompt learning that models/decode.py places (beside peftlab's own)
# Types whose update peft folds into the base weights (merge_and_unload); each is tested in
# tests/test_merge.py. Prompt learning has no weight to fold into.
MERGEABLE = {"LOHA", "LOKR", "VERA", "OFT", "BOFT", "FOURIERFT", "LN_TUNING", "ADALORA"}
# Default lr per type where 1e-3 is measured to be wrong. VeRA trains only its scaling vectors (its
# paper uses ~1e-2): on SmolLM2 text-to-SQL at 1e13 FLOPs, test execution accuracy was 0.000 at 1e-3,
# 0.109 at 3e-3, 0.422 at 1e-2 and 0.641 at 3e-2 (bench/RESULTS.md); 1e-2, the paper's value, is the
# default, and a comparison's lr_factors can search around it.
TYPE_LR = {"VERA": 1e-2}
DEFAULT_TYPE = "LOHA"


def peft_types() -> list[str]:
    """Every peft type this installed peft has, by name."""
    return sorted(t.value for t in PEFT_TYPE_TO_CONFIG_MAPPING)


def config_class(peft_type: str) -> type[PeftConfig]:
    by_name = {t.value: cls for t, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    if peft_type not in by_name:
        raise ValueError(
            f"unknown peft type '{peft_type}'{suggest(peft_type, supported_types())}; "
            f"supported: {', '.join(supported_types())}"
        )
    if peft_type in OWN_METHODS:
        raise ValueError(f"{peft_type} is peftlab's own method: use method.name: {OWN_METHODS[peft_type]}")
    cls = by_name[peft_type]
    if _is_prompt_learning(cls) and peft_type not in PROMPT_TYPES_DECODED:
        raise ValueError(
            f"{peft_type} is a prompt-learning type peftlab's decoder cannot place; "
            "supported prompt learning: prompt_tuning, prefix_tuning (methods) and type P_TUNING"
        )
    return cls


def supported_types() -> list[str]:
    """The peft types this method runs, with the installed peft."""
    usable = []
    for peft_type in peft_types():
        try:
            config_class(peft_type)
        except ValueError:
            continue
        usable.append(peft_type)
    return usable


def _is_prompt_learning(cls: type[PeftConfig]) -> bool:
    from peft import PromptLearningConfig

    return issubclass(cls, PromptLearningConfig)


class PeftTunerConfig(BaseModel):
    """``type`` plus the chosen peft config class's own fields (any others are an error)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(
        DEFAULT_TYPE,
        description="The peft type, e.g. LOHA, LOKR, VERA, OFT, BOFT, FOURIERFT, LN_TUNING, P_TUNING; the other "
        "options are that type's peft config fields (see peft's documentation of e.g. LoHaConfig). With the "
        f"installed peft: {', '.join(supported_types())}.",
    )
    _peft_config_cls: type[PeftConfig] | None = PrivateAttr(None)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        config_class(value.upper())
        return value.upper()

    @model_validator(mode="after")
    def _known_fields_and_values(self) -> PeftTunerConfig:
        self._peft_config_cls = config_class(self.type)
        allowed = [f.name for f in dataclasses.fields(self._peft_config_cls) if f.init and f.name not in RESERVED]
        for key in self.tuner_options():
            if key in RESERVED:
                raise ValueError(f"option '{key}' is peftlab's to set ({RESERVED[key]})")
            if key not in allowed:
                raise ValueError(
                    f"'{key}' is not an option of peft's {self._peft_config_cls.__name__}{suggest(key, allowed)}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
        try:  # peft checks the values in the config's __post_init__: before any run starts, not inside one
            self._peft_config_cls(**self.tuner_options(), task_type="CAUSAL_LM")
        except (TypeError, ValueError) as e:
            raise ValueError(f"peft's {self._peft_config_cls.__name__} refuses these options: {e}") from None
        return self

    def tuner_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def peft_config_cls(self) -> type[PeftConfig]:
        return self._peft_config_cls or config_class(self.type)


def peft_config(model: nn.Module, cfg: PeftTunerConfig) -> PeftConfig:
    try:
        return cfg.peft_config_cls()(**cfg.tuner_options(), task_type=peft_common.task_type(model))
    except (TypeError, ValueError) as e:  # peft's own checks of the values
        raise PeftlabError(f"method (peft type {cfg.type}): {e}") from None


def markers() -> tuple[str, ...]:
    """Parameter-name markers of every tuner's tensors: peft's per-type prefixes (``hada_``,
    ``vera_lambda_``, AdaLoRA's ``lora_``, ...), and ``prompt_encoder`` for P-tuning."""
    types = [t for t in PEFT_TYPE_TO_PREFIX_MAPPING if t.value not in OWN_METHODS]
    return tuple(sorted({PEFT_TYPE_TO_PREFIX_MAPPING[t] for t in types} | {"prompt_encoder"}))


def hooks(cfg: PeftTunerConfig) -> frozenset[Hook]:
    """Where the type changes the model, so that hybrids combine it correctly (P-tuning goes last, as prompt tuning)."""
    return frozenset({Hook.INPUT_EMBEDDINGS if cfg.type in PROMPT_TYPES_DECODED else Hook.LINEAR_WRAP})


def label(entry: dict) -> str:
    """A comparison's label: the type in lower case ('loha', 'vera')."""
    return str(entry.get("type") or DEFAULT_TYPE).lower()


METHOD = Method(
    name="peft",
    paper="Any peft tuner by type (Mangrulkar et al., 2022. PEFT. github.com/huggingface/peft); LoHa: "
    "arXiv:2108.06098, LoKr: arXiv:2309.14859, VeRA: arXiv:2310.11454, OFT: arXiv:2306.07280, BOFT: "
    "arXiv:2311.06243, FourierFT: arXiv:2405.03003, LN tuning: arXiv:2312.11420, P-tuning: arXiv:2103.10385, "
    "AdaLoRA: arXiv:2303.10512.",
    config_cls=PeftTunerConfig,
    # Most types wrap Linear layers (listed by `peftlab methods`); P-tuning hooks into the input embeddings.
    hooks=frozenset({Hook.LINEAR_WRAP}),
    hooks_for=hooks,
    default_lr=1e-3,
    default_lr_for=lambda cfg: TYPE_LR.get(cfg.type, 1e-3),
    apply=peft_common.make_apply(peft_config),
    save=peft_common.save,
    load=peft_common.load,
    added_markers=markers(),
    label_for=label,
    peft_config=peft_config,
    loop_hooks=adalora.loop_hooks,
    mergeable_for=lambda cfg: cfg.type in MERGEABLE,
)
