"""What a comparison is: settings (data, model, baseline and fine-tuning recipes, targets), the
run description that names a run, and the plan that turns a setting x methods x seeds into runs.

May import: suite.errors, suite.store, suite.data, suite.models, suite.training (recipes and
numerics are part of a description), methods (the registry, to read a method's hyperparameters).
"""
