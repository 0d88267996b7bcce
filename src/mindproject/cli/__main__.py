import sys

from mindproject.cli.main import main

sys.exit(main())
