from blelock.cli import main

raise SystemExit(main())
