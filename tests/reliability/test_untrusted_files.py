"""Loading other people's files never runs their code: pickle-only models and adapters are refused
unless the user passes --allow-unsafe-pickle; model-written SQL cannot write or run forever."""

from __future__ import annotations

import sqlite3

import pytest

from peftlab.config import ModelConfig
from peftlab.errors import PeftlabError
from peftlab.models import load_backbone
from peftlab.models.tiny import tiny_model
from peftlab.tasks import metrics


@pytest.fixture
def pickle_model(tmp_path):
    model, tok = tiny_model("tiny-llama")
    folder = tmp_path / "pickled"
    model.save_pretrained(str(folder), safe_serialization=False)
    tok.save_pretrained(str(folder))
    for f in folder.glob("*.safetensors"):  # transformers 5 may write safetensors anyway: keep only the pickle
        f.unlink()
    import torch

    if not list(folder.glob("*.bin")):
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickle_only_model_is_refused_without_the_flag(pickle_model):
    with pytest.raises(PeftlabError, match=r"stored only as pickle \(pytorch_model.bin\).*--allow-unsafe-pickle"):
        load_backbone(ModelConfig(name=str(pickle_model)))


def test_pickle_only_model_loads_with_the_flag(pickle_model):
    bb = load_backbone(ModelConfig(name=str(pickle_model)), allow_unsafe_pickle=True)
    assert sum(p.numel() for p in bb.model.parameters()) > 0


def test_pickle_only_adapter_is_refused(tmp_path, copy_task):
    import yaml

    from peftlab.config import load_config
    from peftlab.evaluation.evaluate import load_run
    from peftlab.training.train import train

    cfg = {
        "name": "r",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "tiny-llama"},
        "method": {"name": "lora", "rank": 2},
        "task": copy_task,
        "train": {"max_steps": 1},
        "eval": {"max_test": 1, "max_validation": 1},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = train(load_config(tmp_path / "c.yaml"))
    adapter = run_dir / "adapter"
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(PeftlabError, match="adapter is stored only as pickle"):
        load_run(run_dir)


def test_trust_remote_code_is_off_by_default():
    assert ModelConfig().trust_remote_code is False


def test_model_sql_that_writes_or_loops_scores_zero_and_changes_nothing(tmp_path):
    db = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE item (name TEXT)")
    conn.execute("INSERT INTO item VALUES ('a')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    attacks = [
        "DROP TABLE item",
        "INSERT INTO item VALUES ('b')",
        "ATTACH 'x.db' AS x",
        "PRAGMA query_only = OFF",
        "DELETE FROM item RETURNING name",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    ]
    gold = "SELECT name FROM item"
    scores = metrics.execution_accuracy(attacks, [[gold]] * len(attacks), [str(db)] * len(attacks))
    assert scores["execution_accuracy"] == 0.0
    assert db.read_bytes() == before and not (tmp_path / "x.db").exists()
    # A second statement after the answer is cut off (models often run on after ';'): only the SELECT runs.
    tail = metrics.execution_accuracy(["SELECT name FROM item; DELETE FROM item"], [[gold]], [str(db)])
    assert tail["execution_accuracy"] == 1.0 and db.read_bytes() == before
