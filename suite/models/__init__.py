"""Models and surgery: the built-in networks, the model registry (torchvision, timm, user files),
each model's layout (what may be pruned), groups of coupled channels, a transformer's attention
heads and MLP channels, ratio specs resolved per layer, and the surgery that removes them.

May import: suite.errors, suite.registry, suite.measure.metrics (FLOPs of a dry surgery).
"""
