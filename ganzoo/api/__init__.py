"""The plugin contract: the hooks a plugin implements (``hookspecs``), the interfaces its components implement and
the records they receive (``interfaces``), option validation (``options``) and the one error type the command line
shows as one line (``errors``). A plugin imports these through ``ganzoo``."""
