import sys

from projectors.cli import main

sys.exit(main())
