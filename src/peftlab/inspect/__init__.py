"""Look inside: token attributions of a run's output, what a task's data looks like to a model, and
where a method's parameters are.

    attribute(run_dir, split, index) -> dict     integrated gradients (Sundararajan et al., 2017) of
                                                 log p(output | prompt) over the input tokens
    attribution_html(result) -> str              the same as an HTML snippet (for reports)
    save_attribution(result, run_dir)            RUN_DIR/attributions/<split>-<index>.json/.png/.html
    inspect_data(task_or_config, ...)            token lengths, labels, truncation, formatted examples
    method_params(model, method_cfg), all_methods(model)   parameters per module group, adapter bytes
"""

from peftlab.inspect.attribute import attribute, attribute_prompt, save_attribution
from peftlab.inspect.data_report import inspect_data
from peftlab.inspect.params import all_methods, method_params
from peftlab.inspect.render import attribution_html, heatmap_png

__all__ = [
    "all_methods",
    "attribute",
    "attribute_prompt",
    "attribution_html",
    "heatmap_png",
    "inspect_data",
    "method_params",
    "save_attribution",
]
