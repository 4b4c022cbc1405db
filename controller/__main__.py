"""``python -m controller`` is the same program as the ``machine-reconciler`` script."""

from controller.cli import main

raise SystemExit(main())
