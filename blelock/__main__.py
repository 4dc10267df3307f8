from blelock.entry import main

raise SystemExit(main())
