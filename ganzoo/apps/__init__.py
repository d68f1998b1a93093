"""What people use: the command line (``cli``, one module per verb), the cover studio (``studio``), track
lookups (``tracks``), cover files and grids (``covers``), and the functions scripts and benchmarks call
(``toolkit``)."""
