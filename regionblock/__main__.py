"""``python -m regionblock``."""

from regionblock.cli import main

raise SystemExit(main())
