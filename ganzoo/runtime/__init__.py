"""What every layer above stands on: the run configuration (``config``), where and how a run computes
(``context``), memory estimates (``memory``), safe files and folders (``files``), checkpoint files
(``checkpoint``), optimisers for plugins (``optim``) and bounds on user input (``limits``)."""
