"""RACE distractor generation (Gao et al. 2019, "Generating Distractors for Reading Comprehension
Questions from Real Examinations"): article + question + correct answer -> a wrong but plausible
option.

Training has one example per distractor (each wrong option is a valid target); validation and
test have one example per question, scored against all its distractors (multi-reference BLEU and
ROUGE, as in Gao et al.).
"""

from __future__ import annotations

from peftlab.errors import PeftlabError
from peftlab.tasks.readers.common import check_options

LETTERS = "ABCDEFGH"


def race_distractors(raw: dict[str, list[dict]], options: dict, where: str) -> dict[str, list[dict]]:
    check_options(options, {}, where, "race_distractors")
    out = {}
    for split, rows in raw.items():
        out[split] = []
        for n, row in enumerate(rows):
            try:
                opts, answer = list(row["options"]), str(row["answer"]).strip()
                gold = LETTERS.index(answer) if answer in LETTERS else opts.index(answer)
            except (KeyError, TypeError, ValueError) as e:
                raise PeftlabError(
                    f"{where} {split} row {n + 1}: needs options (a list) and answer (a letter or "
                    f"an option's text); problem: {e!r}"
                ) from None
            distractors = [o for i, o in enumerate(opts) if i != gold]
            base = {**row, "answer_text": opts[gold], "distractors": distractors}
            # One RACE article has several questions under the same example_id.
            rid = f"{row.get('example_id', split)}#{n}"
            if split == "train":
                out[split] += [{**base, "id": f"{rid}-{i}", "distractor": d} for i, d in enumerate(distractors)]
            else:
                out[split].append({**base, "id": rid, "distractor": distractors[0]})
    return out
