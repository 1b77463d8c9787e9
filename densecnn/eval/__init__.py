"""Honest metrics on held-out data: ``densecnn eval detect|segment|classify``.

Every task evaluator takes an :class:`~densecnn.eval.config.EvalConfig` and returns an
:class:`~densecnn.eval.config.EvalOutcome`; the CLI prints it as a table and writes ``metrics.json``.
"""
