import sys

from jlstm.cli import main

sys.exit(main())
