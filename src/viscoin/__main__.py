"""`python -m viscoin` is the same as the `viscoin` command."""

from viscoin.cli import main

if __name__ == "__main__":
    main()
