"""`python -m mlxm`, as the installed `mlxm` command."""

import sys

from mlxm.cli import main

sys.exit(main())
