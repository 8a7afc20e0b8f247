"""``python -m medzs``: the same command-line interface as the ``medzs`` console script."""

from medzs.cli import main

if __name__ == "__main__":
    main()
