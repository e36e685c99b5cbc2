"""The ``suite`` command: argument parsing over the modules that do the work.

``commands`` holds the parser and ``main`` (the installed script and ``python -m suite.cli``);
one module per command (``listing``, ``baseline``, ``run``, ``search``, ``leaderboard``,
``results``, ``migrate``, ``latency``), each with its ``NAME``, ``add(subparsers)`` declaring its
flags and ``main(args)`` running it; the flags several commands share are in ``flags``, and the
checks that turn what was typed into the objects the suite runs on (a setting, jobs, numerics,
engine options) in ``options``. A new command is a module here and one entry in ``COMMANDS``.

May import anything of the suite: this package is the top floor. A command imports the modules
that do its work inside its ``main``, so ``suite --help`` and a bad flag answer without loading
torch. Bad input ends in one line, ``error: <problem and fix>``, and exit code 2, with nothing
written.
"""
