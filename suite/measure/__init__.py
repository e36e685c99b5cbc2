"""Measurement: params, FLOPs, latency with its quartiles, per-layer times and stored latency records.

May import: suite.errors, suite.store, suite.models.
"""
