from streambind.cli import main

raise SystemExit(main())
