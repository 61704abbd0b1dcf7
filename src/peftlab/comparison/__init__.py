"""A comparison: several methods, seeds and learning rates at one budget, and its verdict.

compare expands an experiment into run configs and runs them (compare_checks: the checks before and
after, and each run's label); lr_search gives each method its own learning rate by successive halving
(rung: where a search run stops; lr_choice: which rate wins, and how sure that is); launch runs a
grid of runs on this machine, a Ray cluster or a Slurm array; demo is the packaged three-method
comparison behind ``peftlab demo``. The leaderboard and report are peftlab.report's.
"""
