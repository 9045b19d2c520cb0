import sys

from claude_fanout.cli.main import main

sys.exit(main())
