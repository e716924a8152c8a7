from propensity.cli.main import main

raise SystemExit(main())
