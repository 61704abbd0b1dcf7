"""Built-in tasks that need no data files (they make their own data)."""

from __future__ import annotations

from peftlab.config import TaskConfig
from peftlab.models.bundled import cache_root
from peftlab.tasks import sql_demo as demo
from peftlab.tasks.task import Example, Task


def sql_demo(cfg: TaskConfig) -> Task:
    """Text-to-SQL over a small employees database that peftlab creates; execution accuracy.

    Test questions use phrasings, values and intent combinations never seen in training (see
    ``peftlab.tasks.sql_demo``), so a gain over zero-shot is learning, not copying.
    """
    db = demo.build_database(cache_root() / "tasks" / "sql_demo.sqlite")
    splits = {
        split: [Example(e["id"], demo.prompt(e["question"]), e["sql"], [e["sql"]], database=str(db)) for e in rows]
        for split, rows in demo.make_examples(seed=0).items()
    }
    max_new = cfg.max_new_tokens if "max_new_tokens" in cfg.model_fields_set else 48
    return Task("sql_demo", splits, ["execution_accuracy"], "execution_accuracy", max_new, format_input=demo.prompt)


BUILTIN = {"sql_demo": sql_demo}
