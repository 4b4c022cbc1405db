"""``python -m controller`` is the same program as the ``machine-reconciler`` script."""

from controller.cli.commands import main

raise SystemExit(main())
