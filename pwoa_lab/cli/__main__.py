"""`python -m pwoa_lab.cli ...`: the same as `pwoa-lab ...`."""
import sys

from pwoa_lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
