import sys

from ovi_pl.cli import main

sys.exit(main())
