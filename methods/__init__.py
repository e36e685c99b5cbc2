"""Pruning methods behind one interface (methods.base) and one registry (methods.registry).

Nothing here trains a baseline, removes filters or writes a result: the harness in suite/ does.
"""
