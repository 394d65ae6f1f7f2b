"""``python -m aurora_storage`` runs the command line."""

from .cli import main

main()
