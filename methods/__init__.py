"""Pruning methods behind one interface (methods.base), one registry (methods.registry) and shared
selection rules (methods.criteria). Every module here is imported by the registry on first use.

Nothing here trains a baseline, removes filters or writes a result: the harness in suite/ does.
"""
