"""Multi-object tracking and counting on top of any box predictor (``densecnn track``).

``TrackingStage`` is a pipeline stage (``pipeline.stream(stages=[...])``): per source, an Ultralytics
tracker gives each confirmed track an id, and a ``CrossingCounter`` counts line crossings and zone
occupancy (rules in ``densecnn.track.counting``). ``geometry`` parses ``--line`` / ``--zone``;
``settings`` reads ``--tracker``.
"""
