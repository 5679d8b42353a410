from volgen.cli import main

raise SystemExit(main())
