"""`peftlab export RUN --format gguf`: a finished run, merged, as one GGUF file for llama.cpp and its kin.

GGUF (llama.cpp's format) holds the weights and everything needed to run them in one file: the
architecture's shape as metadata (``llama.*``), the tensors under llama.cpp's names (``blk.N.attn_q``),
and the tokenizer with its chat template. Llama-family models only (SmolLM2, the tiny
test model): another architecture has other tensor names and metadata, and a file llama.cpp reads as
llama but computes differently would be worse than none.

Two layout differences from transformers, both undone by llama.cpp's and transformers' readers:
q and k rows are reordered for llama.cpp's rotary embedding (rotary_to_interleaved), and a tied output
head is not written (the embedding serves both, as in transformers). Norm weights stay float32, as
llama.cpp's converter keeps them: they are tiny and scale every activation; matrices take the chosen type.

The run is loaded and merged as `peftlab merge` does (in float32 on CPU); methods that train the
existing weights (full, last layers) need no merge. The file is written under a temporary name and
renamed into place, so an interrupted export leaves no half file where the GGUF should be.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import ByT5Tokenizer

from peftlab.errors import PeftlabError, suggest
from peftlab.evaluation.evaluate import load_run, load_run_config
from peftlab.methods import REGISTRY, get_method, method_options
from peftlab.methods.base import Hook
from peftlab.methods.peft_tuner import MERGEABLE

# --type -> (what matrices are stored as, llama.cpp's file type: the "mostly" type a loader reports)
TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
# Methods whose trained weights are the model's own: the loaded run is already a plain model.
WEIGHTS_ONLY_HOOKS = frozenset({Hook.PARAMETER_SUBSET, Hook.NONE})
# Why a method's update cannot live in a GGUF, by where it changes the network.
NOT_A_WEIGHT_CHANGE = {
    Hook.INPUT_EMBEDDINGS: "its soft prompt is not a weight change (virtual tokens the model reads before the input)",
    Hook.ATTENTION_KV: "its prefix is not a weight change (virtual keys and values every attention layer reads)",
    Hook.BLOCK_PARALLEL: "its adapters are new modules beside the blocks, which the llama architecture has no "
    "place for",
    Hook.BLOCK_SERIES: "its adapters are new modules after the blocks, which the llama architecture has no place for",
}


def check_type(dtype: str) -> tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]:
    if dtype not in TYPES:
        raise PeftlabError(
            f"--type: unknown GGUF type {dtype!r}{suggest(dtype, list(TYPES))}; choose from {list(TYPES)}"
        )
    return TYPES[dtype]


def rotary_to_interleaved(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """q or k projection rows reordered from transformers' rotary layout to llama.cpp's.

    Within a head of d dimensions, transformers rotates dimension i with i + d/2 (rotate_half), while
    llama.cpp's llama rope rotates neighbours 2i and 2i + 1. Row s*d/2 + i (s = 0, 1) moves to row
    2i + s: each rotated pair then sits where llama.cpp looks for it, with the same angle (its index i),
    so q.k scores - the only thing the order of these rows reaches - are unchanged."""
    rows = weight.shape[0]
    if rows % (2 * n_heads):
        raise PeftlabError(f"a projection of {rows} rows does not split into {n_heads} heads of even size")
    half = rows // n_heads // 2
    return weight.reshape(n_heads, 2, half, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _llama_config(model) -> dict:
    """The llama.* metadata of ``model``, or a PeftlabError naming what llama.cpp's llama cannot hold."""
    kind = type(model).__name__
    if kind not in SUPPORTED_ARCHITECTURES:
        hint = " (merge the adapter first: merge_and_unload)" if hasattr(model, "peft_config") else ""
        raise PeftlabError(
            f"GGUF export supports the architectures {', '.join(SUPPORTED_ARCHITECTURES)} (Llama family, e.g. "
            f"SmolLM2, tiny-llama); this model is a {kind}{hint}"
        )
    c = model.config
    rope = getattr(c, "rope_parameters", None) or {"rope_theta": getattr(c, "rope_theta", 10000.0)}
    unsupported = {
        f"rope type {rope.get('rope_type')!r}": rope.get("rope_type", "default") != "default",
        "attention biases": bool(getattr(c, "attention_bias", False)),
        "MLP biases": bool(getattr(c, "mlp_bias", False)),
        f"activation {c.hidden_act!r}": c.hidden_act != "silu",
    }
    if any(unsupported.values()):
        named = ", ".join(k for k, v in unsupported.items() if v)
        raise PeftlabError(
            f"GGUF export writes plain Llama models (default rope, no biases, SiLU); this one has {named}"
        )
    heads = c.num_attention_heads
    return {
        "context_length": c.max_position_embeddings,
        "embedding_length": c.hidden_size,
        "block_count": c.num_hidden_layers,
        "feed_forward_length": c.intermediate_size,
        "head_count": heads,
        "head_count_kv": c.num_key_value_heads or heads,
        "head_dim": getattr(c, "head_dim", None) or c.hidden_size // heads,
        "rope_theta": float(rope["rope_theta"]),
        "rms_norm_eps": float(c.rms_norm_eps),
        "vocab_size": model.get_input_embeddings().weight.shape[0],
    }


def _write_architecture(writer: gguf.GGUFWriter, arch: dict, file_type: gguf.LlamaFileType, name: str) -> None:
    writer.add_type(gguf.GGUFType.MODEL)  # a model, not a LoRA adapter file
    writer.add_name(name)
    writer.add_context_length(arch["context_length"])
    writer.add_embedding_length(arch["embedding_length"])
    writer.add_block_count(arch["block_count"])
    writer.add_feed_forward_length(arch["feed_forward_length"])
    writer.add_head_count(arch["head_count"])
    writer.add_head_count_kv(arch["head_count_kv"])
    writer.add_rope_dimension_count(arch["head_dim"])
    writer.add_rope_freq_base(arch["rope_theta"])
    writer.add_layer_norm_rms_eps(arch["rms_norm_eps"])
    writer.add_vocab_size(arch["vocab_size"])
    writer.add_file_type(file_type)
    if arch["head_dim"] * arch["head_count"] != arch["embedding_length"]:
        # llama.cpp assumes hidden / heads unless told; transformers reads the rope width as head_dim
        writer.add_key_length(arch["head_dim"])
        writer.add_value_length(arch["head_dim"])


def _stored(weight: torch.Tensor, qtype: gguf.GGMLQuantizationType) -> tuple[np.ndarray, dict]:
    """``weight`` as the numpy array GGUFWriter.add_tensor takes, and the keywords that type needs."""
    w = weight.detach().to("cpu", torch.float32).contiguous()
    if qtype == gguf.GGMLQuantizationType.F16:
        return w.to(torch.float16).numpy(), {}
    if qtype == gguf.GGMLQuantizationType.BF16:
        # numpy has no bfloat16: torch rounds to it, the bits travel as int16 and the writer is told the type
        return w.to(torch.bfloat16).view(torch.int16).numpy(), {"raw_dtype": qtype}
    return w.numpy(), {}


def _named_tensors(model, arch: dict):
    """(GGUF name, tensor, whether it is a norm) for every weight llama.cpp's llama reads."""
    inner = model.model
    embed = inner.embed_tokens.weight
    yield "token_embd.weight", embed, False
    for i, layer in enumerate(inner.layers):
        attn, mlp = layer.self_attn, layer.mlp
        yield f"blk.{i}.attn_norm.weight", layer.input_layernorm.weight, True
        yield f"blk.{i}.attn_q.weight", rotary_to_interleaved(attn.q_proj.weight, arch["head_count"]), False
        yield f"blk.{i}.attn_k.weight", rotary_to_interleaved(attn.k_proj.weight, arch["head_count_kv"]), False
        yield f"blk.{i}.attn_v.weight", attn.v_proj.weight, False
        yield f"blk.{i}.attn_output.weight", attn.o_proj.weight, False
        yield f"blk.{i}.ffn_norm.weight", layer.post_attention_layernorm.weight, True
        yield f"blk.{i}.ffn_gate.weight", mlp.gate_proj.weight, False
        yield f"blk.{i}.ffn_up.weight", mlp.up_proj.weight, False
        yield f"blk.{i}.ffn_down.weight", mlp.down_proj.weight, False
    yield "output_norm.weight", inner.norm.weight, True
    head = model.lm_head.weight
    # A head equal to the embedding is left out: readers then tie them, as the model does.
    if head.shape != embed.shape or not torch.equal(head, embed):
        yield "output.weight", head, False


# ---- the tokenizer ---------------------------------------------------------------------------------
# A GGUF carries no tokenizer.json: vocabulary, merges, token types and special ids are tokenizer.ggml.*
# metadata, and tokenizer.ggml.pre names the word split applied before the merges (llama.cpp has those
# regexes built in and cannot read one from the file). Two tokenizers map onto llama.cpp's "gpt2"
# (byte-level BPE) model exactly: a byte-level BPE whose word split llama.cpp knows by name (SmolLM2),
# and ByT5's bytes (the tiny test models: one token per byte and no merges is byte-level BPE too, since
# with no merges every byte stays a token whatever the word split). Anything else is refused rather
# than written approximately: a tokenizer that splits text differently gives other ids, silently.

# gguf's TokenType values (the numbers llama.cpp reads).
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5

SUPPORTED_TOKENIZERS = (
    "byte-level BPE with the GPT-2 word split ('gpt-2') or digits split off first ('smollm')",
    "ByT5's byte tokenizer",
)


@dataclass
class GgufVocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str  # llama.cpp's name for the word split
    special_ids: dict[str, int | None] = field(default_factory=dict)  # bos, eos, pad, unk
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None


def byte_alphabet() -> list[str]:
    """The character byte-level BPE spells byte b with: printable Latin-1 bytes stand for themselves,
    the others (controls, space, soft hyphen) are moved to 256 upwards, in byte order, so that no
    token holds whitespace or a control character (space is 'Ġ', newline 'Ċ')."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
    spelled, moved = [], 0
    for b in range(256):
        if b in keep:
            spelled.append(chr(b))
        else:
            spelled.append(chr(256 + moved))
            moved += 1
    return spelled


def vocab_of(tokenizer, vocab_size: int, fallback_ids: dict[str, int | None]) -> GgufVocab:
    """The GGUF vocabulary of ``tokenizer`` padded to the model's ``vocab_size`` rows (llama.cpp wants
    one token per embedding row); ``fallback_ids`` (the model config's) fill special ids the tokenizer
    lacks."""
    if isinstance(tokenizer, ByT5Tokenizer):
        vocab = _byte_vocab(tokenizer)
    elif hasattr(tokenizer, "backend_tokenizer"):
        vocab = _bpe_vocab(json.loads(tokenizer.backend_tokenizer.to_str()))
    else:
        raise PeftlabError(_unsupported(f"a {type(tokenizer).__name__}"))
    if len(vocab.tokens) > vocab_size:
        raise PeftlabError(
            f"the tokenizer has {len(vocab.tokens)} tokens but the model's embedding only {vocab_size} rows; "
            "a GGUF needs one row per token"
        )
    for i in range(len(vocab.tokens), vocab_size):  # rows no token uses (a vocabulary padded for speed)
        vocab.tokens.append(f"[PAD{i}]")
        vocab.types.append(UNUSED)
    for role in ("bos", "eos", "pad", "unk"):
        own = getattr(tokenizer, f"{role}_token_id", None)
        vocab.special_ids[role] = own if own is not None else fallback_ids.get(role)
    vocab.add_bos, vocab.add_eos = _added_specials(tokenizer)
    template = getattr(tokenizer, "chat_template", None)
    vocab.chat_template = template if isinstance(template, str) and template else None
    return vocab


def _unsupported(what: str) -> str:
    return f"{what} cannot be written as a GGUF tokenizer; supported: {'; '.join(SUPPORTED_TOKENIZERS)}"


def _byte_vocab(tokenizer) -> GgufVocab:
    """ByT5: ids below ``offset`` are specials, the next 256 the bytes, the rest sentinel tokens."""
    spelled = byte_alphabet()
    offset = tokenizer.offset
    tokens, types = [], []
    for i in range(len(tokenizer)):
        if offset <= i < offset + 256:
            tokens.append(spelled[i - offset])
            types.append(NORMAL)
        else:
            tokens.append(tokenizer.convert_ids_to_tokens(i))
            types.append(CONTROL)
    return GgufVocab(tokens=tokens, types=types, merges=[], pre="gpt-2")


def _bpe_vocab(spec: dict) -> GgufVocab:
    """A tokenizers-library BPE (tokenizer.json as a dict) whose every step llama.cpp's gpt2 model repeats."""
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise PeftlabError(_unsupported(f"a {model.get('type')} tokenizer"))
    quirks = {
        "byte_fallback": model.get("byte_fallback"),
        "dropout": model.get("dropout"),
        "continuing_subword_prefix": model.get("continuing_subword_prefix") or None,
        "end_of_word_suffix": model.get("end_of_word_suffix") or None,
        "ignore_merges": model.get("ignore_merges"),
        "normalizer": spec.get("normalizer"),
    }
    if any(quirks.values()):
        set_ = ", ".join(k for k, v in quirks.items() if v)
        raise PeftlabError(_unsupported(f"a BPE tokenizer with {set_}"))
    pre = _pre_name(spec.get("pre_tokenizer"))
    by_id = {i: t for t, i in model["vocab"].items()}
    kinds = dict.fromkeys(by_id, NORMAL)
    for added in spec.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        kinds[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    size = max(by_id) + 1
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    types = [kinds.get(i, UNUSED) for i in range(size)]
    # tokenizers writes a merge as "a b" (older files) or ["a", "b"]; GGUF stores the string form.
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return GgufVocab(tokens=tokens, types=types, merges=merges, pre=pre)


def _byte_level(step: dict) -> bool:
    return step.get("type") == "ByteLevel" and not step.get("add_prefix_space") and step.get("use_regex", True)


def _pre_name(pre: dict | None) -> str:
    """llama.cpp's name for a word split, from the tokenizer.json pre_tokenizer that performs it."""
    if pre and _byte_level(pre):
        return "gpt-2"  # the GPT-2 regex
    steps = (pre or {}).get("pre_tokenizers", [])
    if (
        len(steps) == 2
        and steps[0].get("type") == "Digits"
        and steps[0].get("individual_digits")
        and _byte_level(steps[1])
    ):
        return "smollm"  # each digit its own word, then the GPT-2 regex
    raise PeftlabError(_unsupported(f"a BPE tokenizer with the word split {json.dumps(pre)}"))


def _added_specials(tokenizer) -> tuple[bool, bool]:
    """Whether encoding adds a BOS before / an EOS after the text: read off what encoding does, since
    tokenizers say it in different places (a post-processor, a flag, ByT5's code)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return start > 0, start + len(bare) < len(full)
    return False, False


def write_vocab(writer, vocab: GgufVocab) -> None:
    """``tokenizer.*`` keys of a GGUF file, as llama.cpp and transformers' GGUF loader read them."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    else:
        # No merges (ByT5's bytes): transformers' GGUF loader then derives merges from scores and fails
        # without them; llama.cpp's gpt2 vocabulary ignores scores, so zeros change nothing there.
        writer.add_token_scores([0.0] * len(vocab.tokens))
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "pad": writer.add_pad_token_id,
        "unk": writer.add_unk_token_id,
    }
    for role, add in adders.items():
        if vocab.special_ids.get(role) is not None:
            add(int(vocab.special_ids[role]))
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def export_gguf(
    model, tokenizer, path, dtype: str = "f16", *, overwrite: bool = False, name: str | None = None
) -> Path:
    """Write ``model`` (a plain, merged LlamaForCausalLM) and ``tokenizer`` as the GGUF file ``path``;
    an existing file is kept unless ``overwrite``. Returns the path."""
    qtype, file_type = check_type(dtype)
    path = Path(path)
    if path.exists() and not overwrite:
        raise PeftlabError(f"{path}: already exists; pass --overwrite to replace it (nothing was written)")
    arch = _llama_config(model)
    vocab = vocab_of(tokenizer, arch["vocab_size"], _config_ids(model.config))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target (a rename stays on one file system), named per process so two exports never share it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    writer = gguf.GGUFWriter(tmp, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        _write_architecture(writer, arch, file_type, name or Path(model.config.name_or_path or "model").name)
        write_vocab(writer, vocab)
        with torch.no_grad():
            for gguf_name, weight, is_norm in _named_tensors(model, arch):
                array, extra = _stored(weight, gguf.GGMLQuantizationType.F32 if is_norm else qtype)
                writer.add_tensor(gguf_name, array, **extra)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with tmp.open("rb") as f:  # on disk before the rename: a power cut must not leave an empty file named path
            os.fsync(f.fileno())
        _publish(tmp, path, overwrite)
    finally:
        writer.close()  # no-op once closed; after a failure, frees the handle before the file goes
        tmp.unlink(missing_ok=True)
    return path


def _config_ids(config) -> dict:
    return {role: getattr(config, f"{role}_token_id", None) for role in ("bos", "eos", "pad", "unk")}


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished file into place in one step; without ``overwrite``, a file that appeared at
    ``path`` while this one was written is kept (a hard link never replaces its target)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise PeftlabError(
            f"{path}: appeared while the export ran; it was kept (pass --overwrite to replace it)"
        ) from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise PeftlabError(f"{path}: already exists; pass --overwrite to replace it") from None
        os.replace(tmp, path)


def how_to_export(cfg) -> str:
    """'merge' (fold the adapter in) or 'as_is' (the run trained the weights themselves), or a
    PeftlabError with the reason the run's update cannot be written into a model file."""
    method, options = get_method(cfg.method.name), method_options(cfg.method)
    if method.merges(options):
        return "merge"
    if method.hooks_of(options) <= WEIGHTS_ONLY_HOOKS:
        return "as_is"
    kind = cfg.method.name + (f" type {cfg.method.type}" if cfg.method.name == "peft" else "")
    mergeable = [m.name for m in REGISTRY.values() if m.mergeable]
    own = [m.name for m in REGISTRY.values() if m.hooks and m.hooks <= WEIGHTS_ONLY_HOOKS]
    raise PeftlabError(
        f"a '{kind}' run cannot be exported as one model file: {_why_not(method, options)}. Export works for runs "
        f"whose update is a change of existing weights ({', '.join(mergeable)}, peft types "
        f"{', '.join(sorted(MERGEABLE))}) and runs that train the weights themselves ({', '.join(own)})"
    )


def _why_not(method, options) -> str:
    # A hybrid lists every hook a component could have; its own components say which it has.
    parts = options.components() if hasattr(options, "components") else [(method, options)]
    hooks = {h for m, o in parts for h in m.hooks_of(o)}
    reasons = [NOT_A_WEIGHT_CHANGE[h] for h in sorted(hooks, key=lambda h: h.value) if h in NOT_A_WEIGHT_CHANGE]
    if getattr(options, "gates", False):
        reasons.append("its gates are new modules")
    if any(m.load_quantized is not None for m, _ in parts):  # QLoRA: a delta on weights rounded to 4 bits
        reasons.append("its base weights are quantized (4-bit), which peftlab does not fold an adapter into")
    if len(parts) > 1 and not reasons:
        reasons.append("peftlab merges no hybrid (its components may not be folded in one after another)")
    return "; ".join(reasons) or "its update cannot be folded into the base weights"


def default_out(run_dir: Path, dtype: str) -> Path:
    return Path(run_dir) / f"model.{dtype}.gguf"


def export_run(run_dir, out_path=None, dtype: str = "f16", *, overwrite: bool = False, log=print) -> Path:
    """Load RUN_DIR's base model and adapter (float32, CPU), merge, and write it as GGUF to ``out_path``
    (default RUN_DIR/model.<type>.gguf). Everything that could refuse is checked before the model loads."""
    run_dir = Path(run_dir)
    check_type(dtype)
    cfg = load_run_config(run_dir)
    try:
        how = how_to_export(cfg)
    except PeftlabError as e:
        raise PeftlabError(f"{run_dir}: {e}") from None
    out = Path(out_path) if out_path is not None else default_out(run_dir, dtype)
    if out.is_dir():
        out = out / default_out(run_dir, dtype).name
    if out.exists() and not overwrite:
        raise PeftlabError(f"{out}: already exists; pass --overwrite to replace it (nothing was loaded or written)")
    _, backbone = load_run(
        run_dir, model_cfg=cfg.model.model_copy(update={"dtype": "float32"}), device=torch.device("cpu"), log=log
    )
    model = backbone.model.merge_and_unload() if how == "merge" else backbone.model
    export_gguf(model.eval(), backbone.tokenizer, out, dtype, overwrite=overwrite, name=cfg.run_name())
    return out
