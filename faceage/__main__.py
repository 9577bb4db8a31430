"""``python -m faceage``: the same command as ``faceage``."""

from faceage.cli import main

raise SystemExit(main())
