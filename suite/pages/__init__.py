"""Reports and pages: the terminal summaries, the static leaderboards, the findings page and the
settings overview, from stored runs only.

May import: suite.store, suite.spec, suite.measure, methods (claims); never training or running.
"""
