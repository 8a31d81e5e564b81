"""``python -m trimbert``: the command line (see :mod:`trimbert.cli`)."""

from trimbert.cli import main

if __name__ == "__main__":
    main()
