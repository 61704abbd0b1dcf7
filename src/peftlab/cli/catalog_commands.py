"""`peftlab tasks` and `peftlab methods`: what is available to train on and to train with.
Imports stay inside the functions that run the commands, so `peftlab --help` stays fast."""

from __future__ import annotations


def add_tasks(sub) -> None:
    tk = sub.add_parser("tasks", help="list the packaged tasks: data source, output type and metrics")
    tk.set_defaults(func=do_tasks)


def do_tasks(args) -> None:
    from rich.markup import escape

    from peftlab.console import console
    from peftlab.tasks.catalog import catalog

    # One block per task: where its data comes from, and how it is scored.
    for name, t in catalog().items():
        metrics = ", ".join([t.get("metric", "rouge"), *t.get("extra_metrics", [])])
        console.print(f"[bold cyan]{name}[/bold cyan]  {escape(t.get('description', ''))}")
        hub = f"{t['hub']}" + (f" ({t['hub_config']})" if t.get("hub_config") else "") if t.get("hub") else "local only"
        files = ", ".join(f"{k}: {v}" for k, v in (t.get("local_files") or {}).items())
        console.print(f"  hub: {escape(hub)}   data_dir files: {escape(files)}")
        console.print(f"  output: {t.get('output_type', 'generate')}   metrics: {metrics}")
    console.print(
        "\nUse one with  task: {name: NAME, data_dir: FOLDER}  (or without data_dir, online, from the hub). "
        "sql_demo is built in and needs no data."
    )


def add_methods(sub) -> None:
    m = sub.add_parser("methods", help="list fine-tuning methods with their options and default learning rates")
    m.set_defaults(func=do_methods)


def do_methods(args) -> None:
    from rich.markup import escape

    from peftlab.console import console
    from peftlab.methods import REGISTRY

    # One block per method (a table squeezes the option descriptions into unreadable columns).
    for m in REGISTRY.values():
        hooks = ", ".join(h.value for h in m.hooks)
        lr = f"{m.default_lr:g}" + (" (depends on the options, see below)" if m.default_lr_for else "")
        console.print(f"[bold cyan]{m.name}[/bold cyan]  hooks: {hooks}   default lr: {lr}")
        console.print(f"  [dim]{escape(m.paper)}[/dim]")
        for key, field in m.config_cls.model_fields.items():
            default = "required" if field.is_required() else repr(field.default)
            console.print(f"  [green]{key}[/green] = {escape(default)}: {escape(field.description or '')}")
        console.print()
