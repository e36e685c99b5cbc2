"""Data: the built-in datasets, a user's image folders and tensors, and the seeded batch streams.

May import: suite.errors, suite.registry, suite.store, suite.usercode (a user's dataset module is loaded like a
user's model file). Nothing here knows a model, a method or a run.
"""
