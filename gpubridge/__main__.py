from gpubridge.cli import main

raise SystemExit(main())
