import sys

from delta.cli import main

sys.exit(main())
