"""`python -m trunkline` is the same as the `trunkline` console script."""

from trunkline.cli import main

raise SystemExit(main())
