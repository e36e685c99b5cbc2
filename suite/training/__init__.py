"""Training: the loop every phase runs through, its numerics (precision, layout, compilation),
progress lines, and the shared baseline.

May import: suite.errors, suite.store, suite.data, suite.models, suite.spec (a baseline is trained
from a setting's recipe), suite.measure.metrics (the processor a baseline ran on).
"""
