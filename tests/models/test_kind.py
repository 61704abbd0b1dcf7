"""The ModelKind contract (models/kind.py), run on both kinds with the tiny models: each kind has every
operation, and what the operations return agrees with the model itself (its config, its logits, the
batch it is given), computed here by hand rather than through another kind method."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModelForCausalLM, PeftModelForSeq2SeqLM, TaskType, get_peft_model

from peftlab.measure.flops import StepFlops
from peftlab.models import arch
from peftlab.models.backbone import Backbone
from peftlab.models.causal import CAUSAL
from peftlab.models.kind import IGNORE, Decoder, ModelKind, kind_of, kind_of_config, output_head
from peftlab.models.seq2seq import SEQ2SEQ
from peftlab.models.tiny import tiny_model

ARCHS = ("tiny-t5", "tiny-gpt-neo", "tiny-llama")
EXAMPLES = [("Repeat: cat", "cat"), ("Repeat the longer word: river", "river"), ("Say: a", "a")]


def backbone(name: str) -> Backbone:
    model, tok = tiny_model(name)
    return Backbone(model=model, tokenizer=tok, source=name)


def collated(bb: Backbone) -> dict[str, torch.Tensor]:
    return bb.collate([bb.encode(p, t) for p, t in EXAMPLES])


def protocol_members() -> set[str]:
    """The names ModelKind declares: its methods and its annotated attributes."""
    methods = {n for n, v in vars(ModelKind).items() if callable(v) and not n.startswith("_")}
    return methods | set(ModelKind.__annotations__)


# ---- every member, on both kinds ---------------------------------------------------------------


def test_protocol_lists_the_operations_sites_call():
    members = protocol_members()
    # One from each group the branch sites moved into: encoding, loss, scoring, decoding, methods, measuring.
    assert {"features", "loss_sum", "option_logprobs", "decoder", "stacks", "prefix_activations"} <= members
    assert {"probe_batch", "decoder_length", "forgetting_split", "auto_class", "peft_task_type"} <= members


@pytest.mark.parametrize("kind", [CAUSAL, SEQ2SEQ], ids=["causal", "seq2seq"])
def test_kind_implements_every_member(kind):
    assert isinstance(kind, ModelKind)
    for name in protocol_members():
        assert hasattr(kind, name), f"{type(kind).__name__} lacks {name}"
        declared = vars(ModelKind).get(name)
        if callable(declared):
            assert callable(getattr(kind, name)), f"{type(kind).__name__}.{name} is not a method"


def test_a_kind_missing_one_operation_is_not_a_model_kind():
    members = protocol_members()
    partial = type("Partial", (), {n: getattr(CAUSAL, n) for n in members if n != "forgetting_split"})()
    assert not isinstance(partial, ModelKind)
    complete = type("Complete", (), {n: getattr(CAUSAL, n) for n in members})()
    assert isinstance(complete, ModelKind)


# ---- which kind, and what loads it ---------------------------------------------------------------


@pytest.mark.parametrize("name", ARCHS)
def test_kind_of_reads_the_config_also_under_peft(name):
    model, _ = tiny_model(name)
    expected = SEQ2SEQ if model.config.is_encoder_decoder else CAUSAL
    assert kind_of(model) is expected
    assert kind_of_config(model.config) is expected
    assert kind_of_config(object()) is CAUSAL  # a config without the flag: a decoder-only model
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type=expected.peft_task_type))
    assert kind_of(wrapped) is expected
    assert Backbone(model=wrapped, tokenizer=tiny_model(name)[1], source=name).kind is expected


@pytest.mark.parametrize("name", ARCHS)
def test_auto_class_builds_the_model_class(name):
    model, _ = tiny_model(name)
    built = kind_of(model).auto_class.from_config(model.config)
    assert type(built) is type(model)


@pytest.mark.parametrize("name", ARCHS)
def test_peft_task_type_matches_the_config(name):
    model, _ = tiny_model(name)
    task = TaskType(kind_of(model).peft_task_type)  # a value peft knows
    assert task == (TaskType.SEQ_2_SEQ_LM if model.config.is_encoder_decoder else TaskType.CAUSAL_LM)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type=task))
    assert isinstance(wrapped, PeftModelForSeq2SeqLM if model.config.is_encoder_decoder else PeftModelForCausalLM)


# ---- the loss, by hand ---------------------------------------------------------------------------


def hand_loss(bb: Backbone, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    """(summed NLL, scored tokens): log-softmax of the model's own logits read at each labelled token,
    position by position. A decoder-only model predicts token t from position t - 1; a T5 decoder
    reads [start] + labels[:-1] (IGNORE as padding) and predicts each label at its own position."""
    model, labels = bb.model, batch["labels"]
    config = model.config
    if config.is_encoder_decoder:
        start = torch.full_like(labels[:, :1], config.decoder_start_token_id)
        feed = torch.cat([start, labels[:, :-1]], dim=1)
        feed = feed.masked_fill(feed == IGNORE, config.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=feed)
        scored = [(r, t, t) for r in range(labels.shape[0]) for t in range(labels.shape[1])]
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        scored = [(r, t - 1, t) for r in range(labels.shape[0]) for t in range(1, labels.shape[1])]
    logp = torch.log_softmax(logits.logits.detach().double(), dim=-1)
    total, count = 0.0, 0
    for row, at, label_at in scored:
        token = int(labels[row, label_at])
        if token != IGNORE:
            total -= float(logp[row, at, token])
            count += 1
    return total, count


@pytest.mark.parametrize("name", ARCHS)
def test_loss_at_labelled_tokens_is_cross_entropy_of_the_logits(name):
    bb = backbone(name)
    batch = collated(bb)
    expected, count = hand_loss(bb, batch)
    with torch.no_grad():
        got = bb.kind.loss_sum(bb.model, output_head(bb.model), batch)
    assert count > len(EXAMPLES)  # several tokens a row were scored
    assert bb.kind.labelled_tokens(batch) == count
    assert float(got) == pytest.approx(expected, rel=1e-5)


# ---- counts and decoder inputs against the batch ---------------------------------------------------


@pytest.mark.parametrize("name", ARCHS)
def test_token_counts_are_prompt_plus_target(name):
    bb = backbone(name)
    sources = [bb.prompt_ids(p) for p, _ in EXAMPLES]
    targets = [bb.kind.target_ids(bb.tokenizer, t, 128) for _, t in EXAMPLES]
    batch = collated(bb)
    assert bb.kind.batch_tokens(batch) == sum(len(s) + len(t) for s, t in zip(sources, targets))
    assert bb.kind.labelled_tokens(batch) == sum(len(t) for t in targets)  # every target token, EOS too
    for s, t in zip(sources, targets):
        assert bb.kind.source_length(bb.kind.features(s, t)) == len(s)


@pytest.mark.parametrize("name", ARCHS)
def test_decoder_length_is_the_width_the_model_outputs(name):
    bb = backbone(name)
    for s, t in ((5, 3), (4, 7)):
        probe = bb.kind.probe_batch(s, t, bb.device)
        with torch.no_grad():
            width = bb.model(**probe).logits.shape[1]
        # The output runs over the decoder's positions where there is a decoder input, else the input's.
        assert width == (bb.kind.decoder_length(probe) or s)
    batch = collated(bb)
    expected = batch["labels"].shape[1] if bb.model.config.is_encoder_decoder else 0
    assert bb.kind.decoder_length(batch) == expected
    if expected:  # an explicit decoder input wins over the labels
        given = {**batch, "decoder_input_ids": torch.zeros((len(EXAMPLES), expected + 2), dtype=torch.long)}
        assert bb.kind.decoder_length(given) == expected + 2


@pytest.mark.parametrize("name", ARCHS)
def test_forgetting_split_covers_the_text(name):
    kind = kind_of(tiny_model(name)[0])
    ids = list(range(10, 19))
    inputs, labels = kind.forgetting_split(ids)
    if kind.encoder_decoder:  # the encoder reads the first half, the decoder is scored on the rest
        assert inputs + labels == ids and len(inputs) == len(ids) // 2
        assert kind.forgetting_split([7]) == ([7], [7])  # one token: still something to score
    else:  # a language model reads and scores the whole text
        assert inputs == labels == ids


# ---- decoding and scoring ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ARCHS)
def test_decoder_prefill_gives_the_models_next_token_logits(name):
    bb = backbone(name)
    prompt = bb.prompt_ids("Repeat: cat")
    decoder = bb.kind.decoder(bb.model)
    assert isinstance(decoder, Decoder)
    ids, mask = bb.pad_prompts([prompt])
    with torch.no_grad():
        got = decoder.prefill(ids, mask)
        config = bb.model.config
        if config.is_encoder_decoder:
            start = torch.tensor([[config.decoder_start_token_id]])
            expected = bb.model(input_ids=torch.tensor([prompt]), decoder_input_ids=start).logits[:, -1]
        else:
            expected = bb.model(input_ids=torch.tensor([prompt])).logits[:, -1]
    torch.testing.assert_close(got, expected.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ARCHS)
def test_option_scores_equal_one_row_per_option(name):
    bb = backbone(name)
    sources = [bb.prompt_ids("Pick: red or blue?"), bb.prompt_ids("Yes?")]
    options = [[bb.tokenizer("red").input_ids, bb.tokenizer("blue").input_ids], [bb.tokenizer("no").input_ids]]
    pad = bb.tokenizer.pad_token_id
    with torch.no_grad():
        shared = bb.kind.option_logprobs(bb.model, *bb.pad_prompts(sources), options, pad)
        rows = [s for s, opts in zip(sources, options) for _ in opts]
        alone = bb.kind.continuation_logprobs(bb.model, rows, [o for opts in options for o in opts], pad, bb.device)
    assert shared.shape == (3,) and (shared < 0).all()
    torch.testing.assert_close(shared, torch.tensor(alone), rtol=1e-4, atol=1e-4)


def test_padding_moves_a_prefix_only_under_local_attention():
    # GPT-Neo's tiny model has local layers; Llama's and T5's attend globally.
    moved = {name: kind_of(m).padding_moves_prefix(m.config) for name in ARCHS for m in [tiny_model(name)[0]]}
    assert moved == {"tiny-gpt-neo": True, "tiny-llama": False, "tiny-t5": False}


# ---- structure, for methods ----------------------------------------------------------------------


def layer_counts(config) -> dict[str, int]:
    """Blocks per stack, by role, as the config states them (transformers maps GPT-Neo's and T5's names)."""
    if config.is_encoder_decoder:
        return {"decoder": config.num_decoder_layers, "encoder": config.num_layers}
    return {"decoder": config.num_hidden_layers}


@pytest.mark.parametrize("name", ARCHS)
def test_stacks_hold_the_blocks_arch_names(name):
    model, _ = tiny_model(name)
    stacks = kind_of(model).stacks(model)
    counts = layer_counts(model.config)
    assert set(stacks) == set(counts)
    for role, stack in stacks.items():
        blocks = [getattr(stack, n) for n in arch.BLOCKS if isinstance(getattr(stack, n, None), torch.nn.ModuleList)]
        assert len(blocks) == 1 and len(blocks[0]) == counts[role]
        assert [n for n, _ in stack.named_children() if n in arch.FINAL_NORM], f"{role} has no final norm"


@pytest.mark.parametrize("name", ARCHS)
def test_prefix_shape_and_activations(name):
    model, _ = tiny_model(name)
    kind, config = kind_of(model), model.config
    state = torch.random.get_rng_state()
    layers = kind.prefix_activations(model, 3)
    if config.is_encoder_decoder:
        # Sized from the decoder, where T5's prefix lives; no init of its own, and no random draw.
        heads = config.num_heads
        expected = {
            "num_layers": config.num_decoder_layers,
            "token_dim": heads * config.d_kv,
            "num_attention_heads": heads,
        }
        assert kind.prefix_shape(config) == expected
        assert layers is None and torch.equal(torch.random.get_rng_state(), state)
    else:  # one (keys, values) per layer, of the 3 drawn tokens, as the model's own cache holds them
        assert kind.prefix_shape(config) == {}
        assert not torch.equal(torch.random.get_rng_state(), state)  # drawn from the run's generator
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = config.hidden_size // config.num_attention_heads
        assert len(layers) == config.num_hidden_layers
        for keys, values in layers:
            assert keys.shape == values.shape == (1, kv_heads, 3, head_dim)


@pytest.mark.parametrize("name", ARCHS)
def test_flops_pieces(name):
    model, _ = tiny_model(name)
    kind = kind_of(model)
    head = kind.labelled_rows_head(model)
    encoder_query, decoder_query = (0, 1, 0), (0, 0, 1)  # tokens per example: S, T
    if model.config.is_encoder_decoder:  # the head runs everywhere; the prefix reaches the decoder only
        assert head is None
        assert kind.prefix_reaches(decoder_query) and not kind.prefix_reaches(encoder_query)
    else:  # the loss runs the head on labelled rows only; one stack, all of it prefixed
        assert head is model.get_output_embeddings()
        assert kind.prefix_reaches(encoder_query)


@pytest.mark.parametrize("name", ARCHS)
def test_flops_count_takes_the_kind_or_checks_the_old_flag(name):
    bb = backbone(name)
    batch = collated(bb)
    by_kind = StepFlops(bb.model, bb.kind)(batch)
    assert by_kind > 0
    assert StepFlops(bb.model)(batch) == by_kind == StepFlops(bb.model, bb.kind.encoder_decoder)(batch)
    with pytest.raises(ValueError, match="is_encoder_decoder"):
        StepFlops(bb.model, not bb.kind.encoder_decoder)
