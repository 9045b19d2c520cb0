import sys

from claude_fanout.cli import main

sys.exit(main())
