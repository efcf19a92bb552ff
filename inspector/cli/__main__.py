"""`python -m inspector.cli`: the same as the `inspector` command."""

from inspector.cli.main import main

raise SystemExit(main())
