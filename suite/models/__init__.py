"""Models and surgery: the built-in networks, the model registry (torchvision, timm, user files),
each model's layout (what may be pruned), groups of coupled channels, ratio specs resolved per
layer, and the surgery that removes filters.

May import: suite.errors, suite.registry, suite.measure.metrics (FLOPs of a dry surgery).
"""
