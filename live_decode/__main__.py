import sys

from live_decode.cli.main import main

sys.exit(main())
