"""GeoQuery (Zelle & Mooney 1996; SQL version and splits of Finegan-Dollak et al. 2018, "Improving
Text-to-SQL Evaluation Methodology").

Each record groups the paraphrases of one query. Questions and SQL carry placeholders
(``state_name0``) that each sentence's ``variables`` fill. Two splits exist:
- question split (default): a query may appear in train and test with different phrasings;
- query split (``reader_options: {split_by: query}``): every test query is unseen in training,
  the harder test of generalisation that Finegan-Dollak et al. recommend.
Every gold SQL variant is a reference (execution accuracy takes the best).
"""

from __future__ import annotations

import re

from peftlab.errors import PeftlabError
from peftlab.tasks.readers.common import check_options

SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}


def fill(text: str, variables: dict[str, str]) -> str:
    # Longest names first, whole words only: 'city_name10' must not be hit by 'city_name1'.
    for name in sorted(variables, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(name)}\b", lambda _m, v=variables[name]: str(v), text)
    return text


def geoquery(raw: dict[str, list[dict]], options: dict, where: str) -> dict[str, list[dict]]:
    split_by = check_options(options, {"split_by": ("question", "query")}, where, "geoquery").get(
        "split_by", "question"
    )
    if set(raw) != {"all"}:
        raise PeftlabError(
            f"{where}: the geoquery reader reads one file holding every split; "
            "give it as local_files: {all: geography.jsonl}"
        )
    out: dict[str, list[dict]] = {s: [] for s in SPLIT_NAMES.values()}
    for g, group in enumerate(raw["all"]):
        try:
            sqls, sentences = group["sql"], group["sentences"]
            for s, sent in enumerate(sentences):
                split = sent["question-split"] if split_by == "question" else group["query-split"]
                if split not in SPLIT_NAMES:
                    raise PeftlabError(
                        f"{where} record {g + 1}: unknown split {split!r} (expected {', '.join(SPLIT_NAMES)})"
                    )
                variables = sent.get("variables", {})
                golds = [fill(q, variables) for q in sqls]
                out[SPLIT_NAMES[split]].append(
                    {
                        "id": f"geo{g}-{s}",
                        "question": fill(sent["text"], variables),
                        "sql": golds[0],
                        "sqls": golds,
                    }
                )
        except (KeyError, TypeError) as e:
            raise PeftlabError(
                f"{where} record {g + 1}: not a GeoQuery record (needs sql[] and "
                f"sentences[{{text, question-split, variables}}]; problem: {e!r})"
            ) from None
    return out
