"""`python -m edgepack`: the command line."""
from edgepack.toolkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
