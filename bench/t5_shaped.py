"""A FLAN-T5-small-shaped encoder-decoder with random weights, for offline speed benchmarks.

    .venv/bin/python bench/t5_shaped.py CACHE_DIR [--data ../shared/data/dialogsum/train.jsonl]

prints the model folder (CACHE_DIR/flan-t5-small-shaped), building it the first time (~15 s):
config.json + model.safetensors (random init, seed 0) + tokenizer.json + tokenizer_config.json.

There is no model hub here, so the shape is copied from google/flan-t5-small's config (d_model 512,
d_kv 64, d_ff 1024, 8 + 8 layers, 6 heads, gated-gelu, vocab 32128, untied lm_head, relative
attention 32 buckets / 128 max distance): a training step costs what flan-t5-small's costs.
Its tokenizer is a Unigram model (like T5's sentencepiece) trained on the DialogSum train
dialogues and summaries, so token counts are realistic for that data (the corpus yields ~30,200
pieces of the 32,000 asked for; the embedding keeps flan-t5's 32,128 rows). Specials as in T5:
<pad>=0, </s>=1, <unk>=2, and every encoded text ends with </s>. It is saved as a fast tokenizer
because transformers 5's T5Tokenizer(vocab_file=...) silently ignores the file.
Both ``AutoTokenizer.from_pretrained(folder)`` and peftlab's ``model: {name: FOLDER}`` load it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

NAME = "flan-t5-small-shaped"
SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2, as in T5
VOCAB = 32000  # T5's sentencepiece size (an upper bound: DialogSum alone yields ~30,200 pieces)
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "../shared/data/dialogsum/train.jsonl"


def t5_small_config():
    from transformers import T5Config

    return T5Config(
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        d_ff=1024,
        num_layers=8,
        num_decoder_layers=8,
        num_heads=6,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        is_encoder_decoder=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def corpus(data: Path):
    """The DialogSum train dialogues and summaries, one text at a time."""
    with open(data, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield row["dialogue"]
            yield row["summary"]


def train_tokenizer(data: Path):
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()  # words keep their leading "▁", as in sentencepiece
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(corpus(data), trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return tok


def build(folder: Path, data: Path) -> None:
    import torch
    from transformers import PreTrainedTokenizerFast, T5ForConditionalGeneration

    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(data),
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )
    assert [tok.convert_tokens_to_ids(s) for s in SPECIALS] == [0, 1, 2], "specials must be <pad>=0 </s>=1 <unk>=2"
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(t5_small_config())
    untie_lm_head(model)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    folder.chmod(0o755)  # mkdtemp made it private


def untie_lm_head(model) -> None:
    """flan-t5 has its own lm_head, but transformers 5's T5Config forces tie_word_embeddings=True.
    A checkpoint holding both tensors with different values loads untied, so store them apart
    (lm_head initialised as transformers initialises an untied T5 head)."""
    import torch

    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    model.config.tie_word_embeddings = False


def ensure_t5_shaped(cache_dir: str | Path, data: str | Path = DEFAULT_DATA, log=print) -> Path:
    """CACHE_DIR/flan-t5-small-shaped, built once (atomically: a half-built folder is never seen)."""
    target = Path(cache_dir) / NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    log(f"building {target} (tokenizer trained on {Path(data).name}, random weights; once, ~15 s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=target.parent))
    try:
        build(tmp, Path(data))
        if target.exists():  # an incomplete folder from an interrupted older build
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache_dir", help="folder to build the model folder in")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="DialogSum train.jsonl (tokenizer training text)")
    a = ap.parse_args()
    print(ensure_t5_shaped(a.cache_dir, a.data, log=lambda m: print(m, file=sys.stderr)))


if __name__ == "__main__":
    main()
