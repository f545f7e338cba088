"""`python -m bench`: run the whole benchmark."""

import sys

from .run import main

if __name__ == "__main__":
    sys.exit(main())
