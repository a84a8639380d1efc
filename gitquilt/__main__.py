"""``python -m gitquilt`` runs the command line."""

from gitquilt.cli.main import main

if __name__ == "__main__":
    main()
