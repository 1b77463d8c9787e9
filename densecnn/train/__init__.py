"""Training on the user's data: ``densecnn train detect|segment|classify``.

Every task trainer takes a :class:`~densecnn.train.config.TrainConfig` and returns a
:class:`~densecnn.train.config.TrainOutcome`; the CLI only builds the config and prints the outcome.
"""
