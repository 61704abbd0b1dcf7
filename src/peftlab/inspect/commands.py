"""The three `peftlab` inspection commands, as functions the CLI calls: compute, print, write."""

from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape

from peftlab.config import MethodConfig, parse_overrides
from peftlab.console import console, progress
from peftlab.errors import PeftlabError
from peftlab.inspect.attribute import attribute, save_attribution
from peftlab.inspect.data_report import inspect_data
from peftlab.inspect.ig import MAX_STEPS, path_nodes
from peftlab.inspect.params import all_methods, method_params, print_all_methods, print_method_params
from peftlab.methods import method_options


def run_attribute(run_dir: Path, split: str, index: int, steps: int, rule: str, baseline: str, batch_size: int) -> dict:
    if not 1 <= steps <= MAX_STEPS or batch_size < 1:
        raise PeftlabError(f"--steps must be a whole number from 1 to {MAX_STEPS} and --batch-size at least 1")
    with progress() as bar:
        points = len(path_nodes(steps, rule)[0])  # the CLI offers only known rules
        tid = bar.add_task(f"integrated gradients {split} #{index}", total=points, info="")
        result = attribute(
            run_dir,
            split,
            index,
            steps=steps,
            rule=rule,
            baseline=baseline,
            batch_size=batch_size,
            progress=lambda n: bar.advance(tid, n),
        )
    paths = save_attribution(result, run_dir)
    console.print(f"output: [bold]{escape(result['output'])}[/bold]")
    top = sorted(range(len(result["scores"])), key=lambda i: -result["scores"][i])[:10]
    console.print(
        "largest attributions: "
        + ", ".join(f"{escape(repr(result['tokens'][i]))} {result['scores'][i]:+.3f}" for i in top)
    )
    console.print(
        f"completeness: sum {result['attribution_sum']:.4f} vs f(input) - f(baseline) = "
        f"{result['f_input'] - result['f_baseline']:.4f}; gap {result['completeness_gap']:.3g} "
        f"({100 * result['completeness_gap_relative']:.2f}%)"
    )
    if result["completeness_gap_relative"] > 0.05:  # the quadrature missed part of the path integral
        console.print(
            f"[yellow]the attributions' sum is off by {100 * result['completeness_gap_relative']:.0f}% of the "
            f"change in log p: rerun with more --steps (e.g. {2 * steps}) or another --baseline[/yellow]"
        )
    for path in paths.values():
        print(path)  # on stdout alone, for scripts
    return result


def run_data(
    target: str, model: str | None, split: str, data_dir: str | None, out: str | None, n_examples: int
) -> None:
    _, paths = inspect_data(target, model, split, data_dir, out, n_examples)
    for path in paths:
        print(path)


def method_config(method: str, overrides: list[str]):
    """MethodConfig from --method and --set method.KEY=VALUE (validated by the method's options)."""
    options = {}
    for key, value in parse_overrides(overrides):
        if not key.startswith("method.") or key == "method.name":
            raise PeftlabError(
                f"--set {key}: only method options can be set here, e.g. --set method.rank=8 "
                "(the method itself is --method)"
            )
        options[key.removeprefix("method.")] = value
    cfg = MethodConfig(name=method, **options)
    method_options(cfg)  # unknown method or option: a message naming it, before the model loads
    return cfg


def run_params(model: str, method: str, overrides: list[str], as_json: bool) -> None:
    if method == "all":
        if overrides:
            raise PeftlabError("--set applies to one method; --method all uses every method's default options")
        rows = all_methods(model)
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            print_all_methods(rows)
        return
    result = method_params(model, method_config(method, overrides))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_method_params(result)
