import pytest

from peftlab.config import ModelConfig
from peftlab.errors import PeftlabError
from peftlab.models import load_backbone
from peftlab.models.tiny import tiny_model


@pytest.mark.parametrize("arch,seq2seq", [("tiny-t5", True), ("tiny-gpt-neo", False)])
def test_local_folder_architecture_read_from_config(tmp_path, arch, seq2seq):
    model, tok = tiny_model(arch)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    bb = load_backbone(ModelConfig(name=str(tmp_path / "m")))
    assert bb.is_seq2seq is seq2seq
    assert type(bb.model).__name__ == type(model).__name__


def test_hub_id_offline_and_not_cached_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the env var is read at import time; set the parsed constant too so no network call is tried
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PeftlabError, match="not cached locally and the hub cannot be reached"):
        load_backbone(ModelConfig(name="some-org/some-model-that-is-not-here"))


def test_folder_without_safetensors_is_refused(tmp_path):
    model, tok = tiny_model("tiny-llama")
    (tmp_path / "m").mkdir(exist_ok=True)
    model.config.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    import torch

    torch.save(model.state_dict(), tmp_path / "m" / "pytorch_model.bin")  # a pickle file
    with pytest.raises(PeftlabError, match="stored only as pickle.*--allow-unsafe-pickle"):
        load_backbone(ModelConfig(name=str(tmp_path / "m")))


def test_unknown_path_like_name(tmp_path):
    with pytest.raises(PeftlabError, match="neither a bundled model"):
        load_backbone(ModelConfig(name=str(tmp_path / "missing-folder")))
