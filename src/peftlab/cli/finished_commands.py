"""`peftlab eval`, `generate`, `merge` and `score`: what is done with a finished run, or with its predictions.
Imports stay inside the functions that run the commands, so `peftlab --help` stays fast."""

from __future__ import annotations

from pathlib import Path

from peftlab.cli.options import EPILOG, MAX_BEAMS, int_in, remote_code_flag
from peftlab.tasks.metrics import METRICS  # --metric's choices


def add_eval(sub) -> None:
    e = sub.add_parser(
        "eval",
        help="score a finished run on a split by free generation",
        description="Load the base model and the run's adapter, generate for a split and score it; "
        "writes predictions_<split>.csv and eval_<split>.json into the run folder. An earlier result there "
        "is kept: eval stops unless --overwrite is given.",
    )
    e.add_argument("run_dir", help="a run folder written by `peftlab train`")
    e.add_argument(
        "--split", default="test", choices=["train", "validation", "test"], help="split to score (default: test)"
    )
    e.add_argument("--limit", type=int_in(1), default=None, metavar="N", help="score only the first N (>= 1) examples")
    e.add_argument(
        "--allow-unsafe-pickle", action="store_true", help="allow a pickle-only model or adapter (trusted files only)"
    )
    e.add_argument(
        "--num-beams",
        type=int_in(1, MAX_BEAMS),
        default=None,
        help=f"beam search width, 1..{MAX_BEAMS} (default: the run's eval.num_beams, 1 = greedy); writes *_beamN files",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier eval_<split>.json / predictions_<split>.csv (without it, eval refuses to)",
    )
    remote_code_flag(e)
    e.set_defaults(func=do_eval)


def do_eval(args) -> None:
    from peftlab.evaluation.evaluate import eval_run

    eval_run(
        Path(args.run_dir),
        split=args.split,
        limit_n=args.limit,
        num_beams=args.num_beams,
        allow_unsafe_pickle=args.allow_unsafe_pickle,
        overwrite=args.overwrite,
    )


def add_generate(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="generate with a trained run for your own input",
        description="Load a run's model and print its greedy answer for each TEXT. TEXT is put "
        "into the task's prompt template (e.g. a question for sql_demo, a dialogue for DialogSum) and "
        "the model's chat template, exactly as in training; --raw skips the task template.",
    )
    g.add_argument("run_dir", help="a run folder written by `peftlab train`")
    g.add_argument("text", nargs="+", help="input text(s), e.g. the task prompt")
    g.add_argument("--max-new-tokens", type=int_in(1, 4096), default=64, help="generation cap, 1..4096 (default: 64)")
    g.add_argument("--raw", action="store_true", help="use TEXT as the whole prompt (no task template)")
    g.add_argument(
        "--allow-unsafe-pickle", action="store_true", help="allow a pickle-only model or adapter (trusted files only)"
    )
    g.add_argument(
        "--num-beams",
        type=int_in(1, MAX_BEAMS),
        default=1,
        help=f"beam search width, 1..{MAX_BEAMS} (default: 1 = greedy)",
    )
    remote_code_flag(g)
    g.set_defaults(func=do_generate)


def do_generate(args) -> None:
    from peftlab.evaluation.evaluate import load_run
    from peftlab.tasks.base import build_task

    cfg, backbone = load_run(Path(args.run_dir), allow_unsafe_pickle=args.allow_unsafe_pickle)
    fmt = None if args.raw else build_task(cfg.task).format_input
    for text in args.text:
        prompt = fmt(text) if fmt else text
        print(
            backbone.generate(backbone.model, [prompt], max_new_tokens=args.max_new_tokens, num_beams=args.num_beams)[0]
        )


def add_merge(sub) -> None:
    mg = sub.add_parser(
        "merge",
        help="fold a LoRA or IA3 run's adapter into the base weights (plain model folder)",
        description="Load RUN_DIR's base model and adapter, merge the adapter into the weights "
        "(peft merge_and_unload, float32 on CPU) and save a plain transformers model (safetensors, "
        "config, tokenizer) into OUT_DIR, loadable without peft. Only LoRA, IA3 and peft-type runs whose "
        "update is a weight change (LoHa, LoKr, VeRA, OFT, BOFT, FourierFT, LN tuning, AdaLoRA) can be merged.",
    )
    mg.add_argument("run_dir", metavar="RUN_DIR", help="a finished LoRA or IA3 run folder written by `peftlab train`")
    mg.add_argument("out_dir", metavar="OUT_DIR", help="new or empty folder for the merged model")
    remote_code_flag(mg)
    mg.set_defaults(func=do_merge)


def do_merge(args) -> None:
    from peftlab.evaluation.merge import merge_run

    merge_run(Path(args.run_dir), Path(args.out_dir))


def add_export(sub) -> None:
    ex = sub.add_parser(
        "export",
        help="write a finished run, merged, as one GGUF file (llama.cpp, Ollama, LM Studio)",
        description="Load RUN's base model and adapter (float32, CPU), fold the adapter into the weights as "
        "`peftlab merge` does, and write a GGUF file: llama metadata, the weights (norms in f32, matrices in "
        "--type) and the tokenizer with its chat template. Llama-family models only (SmolLM2, tiny-llama) with a "
        "byte-level BPE or ByT5 tokenizer. Runs of LoRA, IA3, the mergeable peft types, and of methods that train "
        "the weights themselves (full, last_layers) export; soft prompts, prefixes and adapter modules cannot. "
        "An existing file is kept unless --overwrite; the file appears whole or not at all.",
        epilog=EPILOG,
    )
    ex.add_argument("run_dir", metavar="RUN", help="a finished run folder written by `peftlab train`")
    ex.add_argument("--format", default="gguf", choices=["gguf"], help="file format (default: gguf)")
    ex.add_argument(
        "--type",
        dest="gguf_type",
        default="f16",
        choices=["f16", "bf16", "f32"],
        help="how the weight matrices are stored (default: f16; norms are always f32)",
    )
    ex.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="the file to write, or a folder for it (default: RUN/model.<type>.gguf)",
    )
    ex.add_argument("--overwrite", action="store_true", help="replace an existing file at the output path")
    remote_code_flag(ex)
    ex.set_defaults(func=do_export)


def do_export(args) -> None:
    from peftlab.evaluation.export_gguf import export_run
    from peftlab.humanize import human_bytes

    out = export_run(
        Path(args.run_dir), None if args.out is None else Path(args.out), args.gguf_type, overwrite=args.overwrite
    )
    print(f"wrote {out} ({human_bytes(out.stat().st_size)})")


def add_score(sub) -> None:
    sc = sub.add_parser(
        "score",
        help="score a predictions.csv with a text metric (no model needed)",
        epilog=EPILOG,
        description="Read PREDICTIONS.csv (columns id,input,reference,prediction, as written by "
        "`peftlab train` or `peftlab eval`; several references in one cell joined with ' ||| ') and "
        "print the scores in [0, 1]: rouge (rouge1/2/L/Lsum F1, best reference per example), "
        "bleu (corpus BLEU-1..4, sacrebleu), exact_match (normalised text), accuracy (exact label "
        "match after strip, plus macro-F1 over the reference labels).",
    )
    sc.add_argument("predictions", metavar="PREDICTIONS.csv", help="a predictions CSV, e.g. runs/x/predictions.csv")
    sc.add_argument("--metric", required=True, choices=list(METRICS), help="which metric to compute")
    sc.add_argument("--json", action="store_true", help="print one JSON object instead of key=value lines")
    sc.set_defaults(func=do_score)


def do_score(args) -> None:
    import json

    from peftlab.evaluation.score import score_csv

    scores = score_csv(Path(args.predictions), args.metric)
    if args.json:
        print(json.dumps(scores))
    else:
        for key, value in scores.items():
            print(f"{key}={value:.4f}")
