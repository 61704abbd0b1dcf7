"""`peftlab export --format gguf`: a merged Llama-family model written as GGUF reads back - with gguf's own
reader and with transformers' GGUF loader - as the same model and the same tokenizer."""

import copy

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from peftlab.config import dump_config
from peftlab.errors import PeftlabError
from peftlab.evaluation.evaluate import load_run_config
from peftlab.evaluation.export_gguf import byte_alphabet, export_gguf, export_run, how_to_export, rotary_to_interleaved
from peftlab.methods import get_method, method_options
from peftlab.models.backbone import Backbone
from peftlab.models.bundled import ensure_cached, gguf_path
from peftlab.models.tiny import tiny_model
from peftlab.training.train import train
from tests.conftest import fixed_batch
from tests.methods.harness import logits
from tests.test_train import make_config

TEXTS = ["The cat sat on 12345 mats.\nHello, wörld!", "<|im_start|>user\nhi<|im_end|>", "  tabs\tand   spaces 2024"]
# Largest |logit difference| allowed against the float32 source, as a fraction of its largest |logit|:
# f32 is the same numbers; f16 keeps 11 significant bits, bf16 8 (measured: 0, 6.6e-4, 5.5e-3).
RELATIVE_TOLERANCE = {"f32": 1e-6, "f16": 3e-3, "bf16": 2e-2}
TORCH_TYPE = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


@pytest.fixture(scope="module")
def smol():
    """SmolLM2's real tokenizer and vocabulary on a 2-layer, 64-wide random Llama: the byte-level BPE
    and chat template of the bundled model, exported and reloaded in seconds."""
    folder = ensure_cached("smollm2-135m", log=lambda *a: None)
    config = AutoConfig.from_pretrained(folder)
    config.update(
        {
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "initializer_range": 0.1,  # logits of a few units, so rounding shows
        }
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    return model, AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def exported(smol, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    model, tok = smol
    return {t: export_gguf(model, tok, folder / f"smol.{t}.gguf", t) for t in TORCH_TYPE}


def token_ids(tok, texts=TEXTS) -> torch.Tensor:
    rows = [tok(t, add_special_tokens=False)["input_ids"][:10] for t in texts]
    return torch.tensor([r + [r[-1]] * (10 - len(r)) for r in rows])  # equal lengths, no padding mask needed


def rounded(model, dtype: torch.dtype):
    """The model with every matrix rounded to ``dtype`` and the norms kept: what the GGUF should hold."""
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        for p in copy_.parameters():
            if p.ndim == 2:
                p.copy_(p.to(dtype).float())
    return copy_


def reload(path):
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()


def fields(path) -> dict:
    reader = gguf.GGUFReader(path)
    return {name: f.contents() for name, f in reader.fields.items()}, {t.name: t for t in reader.tensors}


@pytest.mark.parametrize("kind", list(TORCH_TYPE))
def test_transformers_reloads_the_same_logits(smol, exported, kind):
    model, tok = smol
    ids = token_ids(tok)
    with torch.no_grad():
        ref = model(ids).logits
        got = reload(exported[kind])(ids).logits
        expected = rounded(model, TORCH_TYPE[kind])(ids).logits
    assert ref.abs().max() > 1.0  # logits big enough for rounding to show
    assert (got - ref).abs().max() <= RELATIVE_TOLERANCE[kind] * ref.abs().max()
    # Exactly the rounded weights, in their places: any tensor misplaced or misordered would show here.
    assert (got - expected).abs().max() <= 1e-5


def test_the_file_holds_llama_metadata_and_tensors_under_llama_cpp_names(smol, exported):
    model, tok = smol
    meta, tensors = fields(exported["f16"])
    expected_meta = {
        "general.architecture": "llama",
        "llama.block_count": 2,
        "llama.context_length": 8192,
        "llama.embedding_length": 64,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16,
        "llama.vocab_size": 49152,
        "general.file_type": int(gguf.LlamaFileType.MOSTLY_F16),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": tok.bos_token_id,
        "tokenizer.ggml.eos_token_id": tok.eos_token_id,
        "tokenizer.ggml.padding_token_id": tok.pad_token_id,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": tok.chat_template,
        "llama.attention.key_length": None,  # written only where a head is not hidden / heads wide
    }
    assert {k: meta.get(k) for k in expected_meta} == expected_meta
    assert meta["llama.rope.freq_base"] == pytest.approx(100000.0)
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert len(meta["tokenizer.ggml.tokens"]) == 49152 and meta["tokenizer.ggml.tokens"][
        :3
    ] == tok.convert_ids_to_tokens([0, 1, 2])
    assert meta["tokenizer.ggml.token_type"][:3] == [3, 3, 3] and meta["tokenizer.ggml.token_type"][100] == 1
    assert len(meta["tokenizer.ggml.merges"]) > 40000 and meta["tokenizer.ggml.merges"][0] == "Ġ t"

    per_block = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
    names = {"token_embd.weight", "output_norm.weight"} | {f"blk.{i}.{n}.weight" for i in (0, 1) for n in per_block}
    assert set(tensors) == names  # the head is tied: no output.weight
    # ggml lists dimensions innermost first: (in, out) for a torch (out, in) matrix
    assert list(tensors["blk.1.attn_k.weight"].shape) == [64, 32] and list(tensors["token_embd.weight"].shape) == [
        64,
        49152,
    ]
    assert list(tensors["blk.0.ffn_down.weight"].shape) == [128, 64]
    types = {n: t.tensor_type for n, t in tensors.items()}
    assert {types[n] for n in names if "norm" in n} == {gguf.GGMLQuantizationType.F32}
    assert {types[n] for n in names if "norm" not in n} == {gguf.GGMLQuantizationType.F16}


def test_the_tokenizer_reloads_from_the_file(smol, exported):
    _, tok = smol
    path = exported["f16"]
    again = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in TEXTS:
        assert again(text)["input_ids"] == tok(text)["input_ids"], text
    assert len(tok(TEXTS[0])["input_ids"]) < len(TEXTS[0].encode())  # merges applied, not bytes alone
    chat = [{"role": "user", "content": "Repeat: cat"}]
    assert again.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == tok.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True
    )
    assert (again.bos_token, again.eos_token, again.pad_token) == (tok.bos_token, tok.eos_token, tok.pad_token)


def test_the_bundled_model_exports_as_llama_cpp_converted_it(tmp_path):
    """The bundled SmolLM2 came from a GGUF that llama.cpp's own converter wrote (Q4_1; the cache holds
    it dequantized). Exported at f32 - two of its blocks, to keep the file small - every tensor equals
    that file's dequantized, bit for bit (q and k included: the row order is llama.cpp's), and so does
    every llama.* and tokenizer key they share, but the word split: the cached tokenizer splits words
    with the GPT-2 regex, not SmolLM2's digits-first one."""
    folder = ensure_cached("smollm2-135m", log=lambda *a: None)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    model.model.layers = model.model.layers[:2]
    model.config.num_hidden_layers = 2
    mine = gguf.GGUFReader(export_gguf(model, AutoTokenizer.from_pretrained(folder), tmp_path / "cut.gguf", "f32"))
    theirs = gguf.GGUFReader(gguf_path("smollm2-135m"))
    originals = {t.name: t for t in theirs.tensors}
    assert len(mine.tensors) == 2 + 9 * 2
    for t in mine.tensors:
        original = gguf.dequantize(originals[t.name].data, originals[t.name].tensor_type)
        assert np.array_equal(t.data, original.reshape(t.data.shape)), t.name
    shared = [k for k in theirs.fields if k.startswith(("llama.", "tokenizer.")) and k in mine.fields]
    differs = [k for k in shared if mine.fields[k].contents() != theirs.fields[k].contents()]
    assert differs == ["llama.block_count", "tokenizer.ggml.pre"] and len(shared) >= 20
    assert "tokenizer.ggml.merges" in shared and "tokenizer.ggml.token_type" in shared


def test_byte_alphabet_spells_bytes_as_the_bpe_vocabulary_does(smol):
    _, tok = smol
    spelled = byte_alphabet()
    assert len(set(spelled)) == 256 and spelled[ord(" ")] == "Ġ" and spelled[ord("\n")] == "Ċ"
    assert spelled == [bytes_to_unicode()[b] for b in range(256)]  # the spelling transformers reads back
    # every ASCII byte is a SmolLM2 token under this spelling (bytes no UTF-8 text holds, like 0xff, need not be)
    vocab = tok.get_vocab()
    assert all(spelled[b] in vocab for b in (*range(ord(" "), 127), ord("\n"), ord("\t")))


def llama_cpp_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """llama.cpp's rope for llama ("normal" mode): dimensions 2i and 2i + 1 of each head turn together
    by position * base^(-2i/d). x: (heads, seq, d)."""
    d = x.shape[-1]
    angle = positions[:, None].float() * base ** (-torch.arange(0, d, 2).float() / d)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * angle.cos() - odd * angle.sin()
    out[..., 1::2] = even * angle.sin() + odd * angle.cos()
    return out


def test_reordered_rows_under_llama_cpp_rope_give_transformers_rope_reordered():
    heads, d, hidden, seq = 3, 8, 12, 5
    config = LlamaConfig(hidden_size=hidden, num_attention_heads=heads, head_dim=d, rope_theta=500.0)
    torch.manual_seed(0)
    weight, x = torch.randn(heads * d, hidden), torch.randn(seq, hidden)
    positions = torch.arange(seq)
    cos, sin = LlamaRotaryEmbedding(config)(x, positions[None])
    q = (x @ weight.T).reshape(seq, heads, d).transpose(0, 1)[None]  # (1, heads, seq, d)
    theirs, _ = apply_rotary_pos_emb(q, q, cos, sin)
    ours = llama_cpp_rope(
        (x @ rotary_to_interleaved(weight, heads).T).reshape(seq, heads, d).transpose(0, 1), positions, 500.0
    )
    # the same vectors, each head's dimensions in llama.cpp's order: q.k scores are equal
    expected = rotary_to_interleaved(theirs[0].transpose(0, 1).reshape(seq, heads * d).T, heads)
    assert torch.allclose(ours.transpose(0, 1).reshape(seq, heads * d).T, expected, atol=1e-5)
    assert not torch.allclose(rotary_to_interleaved(weight, heads), weight)  # the reordering is not a no-op


def test_an_untied_head_is_written_as_output(tmp_path):
    model, tok = tiny_model("tiny-llama")
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 0.5)
    path = export_gguf(model, tok, tmp_path / "untied.gguf", "f32")
    assert "output.weight" in fields(path)[1]
    ids = token_ids(tok, ["héllo wörld", "Repeat: cat"])
    with torch.no_grad():
        assert (reload(path)(ids).logits - model(ids).logits).abs().max() <= 1e-5


def test_heads_wider_than_hidden_over_heads_are_stated(tmp_path):
    _, tok = tiny_model("tiny-llama")
    config = LlamaConfig(
        vocab_size=384,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        initializer_range=0.25,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    path = export_gguf(model, tok, tmp_path / "wide.gguf", "f32")
    meta = fields(path)[0]
    assert meta["llama.attention.key_length"] == meta["llama.rope.dimension_count"] == 16
    ids = token_ids(tok, ["héllo wörld", "Repeat: cat"])
    with torch.no_grad():
        assert (reload(path)(ids).logits - model(ids).logits).abs().max() <= 1e-5


def test_byte_tokenizer_of_the_tiny_model_reloads_with_its_eos(tmp_path):
    model, tok = tiny_model("tiny-llama")
    path = export_gguf(model, tok, tmp_path / "tiny.gguf")
    again = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    # (not "<pad>" in the text: ByT5 strips the spaces around its pad/eos/unk there, which GGUF cannot state)
    text = "héllo<extra_id_0> wörld\n 12"
    assert again(text)["input_ids"] == tok(text)["input_ids"] and tok(text)["input_ids"][-1] == tok.eos_token_id
    assert again.chat_template == tok.chat_template


def test_non_llama_models_and_unknown_types_are_refused(tmp_path):
    neo, tok = tiny_model("tiny-gpt-neo")
    with pytest.raises(PeftlabError, match="supports the architectures LlamaForCausalLM.*GPTNeoForCausalLM"):
        export_gguf(neo, tok, tmp_path / "neo.gguf")
    llama, tok = tiny_model("tiny-llama")
    with pytest.raises(PeftlabError, match=r"unknown GGUF type 'fp16' \(did you mean 'f16'\?\).*'f32', 'f16', 'bf16'"):
        export_gguf(llama, tok, tmp_path / "x.gguf", "fp16")
    assert not list(tmp_path.iterdir())


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    model, tok = tiny_model("tiny-llama")
    path = tmp_path / "model.gguf"
    path.write_bytes(b"keep me")
    with pytest.raises(PeftlabError, match="already exists; pass --overwrite"):
        export_gguf(model, tok, path)
    assert path.read_bytes() == b"keep me"
    export_gguf(model, tok, path, overwrite=True)
    assert fields(path)[0]["general.architecture"] == "llama"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]  # no temporary file left behind


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    model, tok = tiny_model("tiny-llama")

    def crash(self, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", crash)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(model, tok, tmp_path / "model.gguf")
    assert not list(tmp_path.iterdir())


# ---- runs ------------------------------------------------------------------------------------------
def fake_run(tmp_path, copy_task, method):
    """A run folder as far as the checks before loading read it: config.yaml and adapter/."""
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(make_config(tmp_path, copy_task, method=method)))
    return run_dir


def test_a_trained_lora_run_exports_as_its_merged_model(tmp_path, copy_task):
    run_dir = train(make_config(tmp_path, copy_task, "tiny-llama", max_steps=3, eval_every=None))
    cfg = load_run_config(run_dir)
    base, tok = tiny_model("tiny-llama")
    merged = get_method("lora").load(base, run_dir / "adapter", method_options(cfg.method)).merge_and_unload().eval()
    batch = fixed_batch(Backbone(model=merged, tokenizer=tok, source="tiny-llama"))
    ref = logits(merged, batch)
    assert (ref - logits(tiny_model("tiny-llama")[0], batch)).abs().max() > 1e-3  # the adapter changed the model

    assert export_run(run_dir, log=lambda *a: None) == run_dir / "model.f16.gguf"  # the default place and type
    f16 = logits(reload(run_dir / "model.f16.gguf"), batch)
    assert (f16 - ref).abs().max() <= RELATIVE_TOLERANCE["f16"] * ref.abs().max()
    out = export_run(run_dir, tmp_path / "out" / "run.gguf", "f32", log=lambda *a: None)
    assert (logits(reload(out), batch) - ref).abs().max() <= 1e-5


def test_a_full_fine_tuning_run_exports_its_trained_weights(tmp_path, copy_task):
    method = {"name": "full"}
    run_dir = train(
        make_config(tmp_path, copy_task, "tiny-llama", method=method, max_steps=2, eval_every=None, lr=1e-3)
    )
    cfg = load_run_config(run_dir)
    base, tok = tiny_model("tiny-llama")
    trained = get_method("full").load(base, run_dir / "adapter", method_options(cfg.method)).eval()
    batch = fixed_batch(Backbone(model=trained, tokenizer=tok, source="tiny-llama"))
    out = export_run(run_dir, tmp_path, "f32", log=lambda *a: None)  # a folder: the default name inside it
    assert out == tmp_path / "model.f32.gguf"
    ref = logits(trained, batch)
    assert (ref - logits(tiny_model("tiny-llama")[0], batch)).abs().max() > 1e-4
    assert (logits(reload(out), batch) - ref).abs().max() <= 1e-5


def test_a_prompt_tuning_run_is_refused_with_the_reason(tmp_path, copy_task):
    run_dir = fake_run(tmp_path, copy_task, {"name": "prompt_tuning", "num_virtual_tokens": 4})
    with pytest.raises(PeftlabError) as e:
        export_run(run_dir, tmp_path / "out.gguf")
    assert "'prompt_tuning' run cannot be exported" in str(e.value)
    assert "its soft prompt is not a weight change" in str(e.value) and "lora" in str(e.value)
    assert not (tmp_path / "out.gguf").exists()


def test_a_run_is_not_exported_over_an_existing_file(tmp_path, copy_task):
    run_dir = fake_run(tmp_path, copy_task, {"name": "lora", "rank": 8, "dropout": 0.0})
    out = tmp_path / "model.gguf"
    out.write_bytes(b"an earlier export")
    # refused before the model loads: the adapter folder is empty, so loading would fail differently
    with pytest.raises(PeftlabError, match="already exists; pass --overwrite"):
        export_run(run_dir, out)
    assert out.read_bytes() == b"an earlier export"
    with pytest.raises(PeftlabError, match="unknown GGUF type"):
        export_run(run_dir, tmp_path / "new.gguf", "q4_0")


@pytest.mark.parametrize(
    "method,reason",
    [
        ({"name": "prefix_tuning"}, "its prefix is not a weight change"),
        ({"name": "parallel_adapter"}, "its adapters are new modules beside the blocks"),
        ({"name": "qlora"}, "its base weights are quantized"),
        ({"name": "peft", "type": "P_TUNING", "num_virtual_tokens": 4}, "'peft type P_TUNING' run"),
        # a hybrid names only what its own components add, not every hook a hybrid could have
        ({"name": "hybrid", "methods": [{"name": "lora"}, {"name": "prompt_tuning"}]}, "input\\)\\. Export works"),
    ],
)
def test_each_unexportable_method_says_why(tmp_path, copy_task, method, reason):
    with pytest.raises(PeftlabError, match=reason):
        how_to_export(make_config(tmp_path, copy_task, method=method))


@pytest.mark.parametrize(
    "method,how", [({"name": "lora"}, "merge"), ({"name": "ia3"}, "merge"), ({"name": "none"}, "as_is")]
)
def test_runs_are_merged_or_taken_as_they_are(tmp_path, copy_task, method, how):
    assert how_to_export(make_config(tmp_path, copy_task, method=method)) == how


def test_the_export_command_writes_the_file_and_refuses_what_it_cannot(tmp_path, copy_task, capsys):
    from peftlab.cli import main

    run_dir = train(make_config(tmp_path, copy_task, "tiny-llama", max_steps=2, eval_every=None))
    assert main(["export", str(run_dir), "--format", "gguf", "--type", "f32", "--out", str(tmp_path / "m.gguf")]) == 0
    assert f"wrote {tmp_path / 'm.gguf'}" in " ".join(capsys.readouterr().out.split())
    assert gguf.GGUFReader(tmp_path / "m.gguf").fields["general.architecture"].contents() == "llama"
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m.gguf")]) == 2  # kept: no --overwrite
    assert "already exists; pass --overwrite" in " ".join(capsys.readouterr().err.split())
