from slmops.cli import main

raise SystemExit(main())
