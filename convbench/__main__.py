import sys

from convbench.cli import main

sys.exit(main())
