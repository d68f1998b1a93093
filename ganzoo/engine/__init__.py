"""The training engine: a config planned into components (``plan``), the model they make (``model``), the
conditions (``conditioning``), the training loop and its bookkeeping (``training``, ``bookkeeping``), what a
checkpoint holds (``run_state``), and sampling from a checkpoint (``sampling``)."""
