"""The store: atomic files, content hashes, locks, the training-code fingerprint, and reading and
renaming stored runs.

Everything a run leaves on disk goes through here. May import: suite.errors, and (to read records
and name runs) suite.spec, suite.training.numerics; never data, models, training loops or pages.
"""
