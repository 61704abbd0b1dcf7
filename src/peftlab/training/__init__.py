"""The training run: one config in, one run folder out.

``train.train(cfg)`` is the recipe, read top to bottom: the task's examples in seeded, length-grouped
batches (batching, train_data), the backbone loaded in the run's precision with the method applied
(run_model), the optimizer steps counted against the budget (budget, train_state, stop), validation
by free generation keeping the best weights on disk (validation, checkpoint), then the test split
scored once and summary.json written (summarize). run holds the run's config, folder, processes and
metrics log; runstart decides whether a folder starts, resumes or is refused. What the run writes and
how is the run folder's business (peftlab.rundir); what it costs is measured by peftlab.measure.
"""
