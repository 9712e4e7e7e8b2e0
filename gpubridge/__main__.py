from gpubridge.launch import main

raise SystemExit(main())
