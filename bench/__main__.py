"""`python -m bench`: see bench/cli.py for what it measures and how."""

from bench.cli import main

raise SystemExit(main())
