"""Measurement: params, FLOPs, latency with its quartiles, per-layer times and stored latency records.

May import: suite.errors, suite.store, suite.models, and suite.training.numerics_default (which
hardware has fast bf16: latency's bf16 runtimes are timed only there).
"""
