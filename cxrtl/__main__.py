import sys

from cxrtl.cli import main

sys.exit(main())
