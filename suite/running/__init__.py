"""Running: the pipeline of a job's phases, the runner that schedules, locks and records them,
the executors (local, Ray, SLURM), the workers' thread shares and the Optuna search.

May import anything below it: suite.store, data, models, training, measure, spec, and methods.
"""
