"""`python -m nsroute` runs the same CLI as the `nsroute` script."""

from .cli import main

main()
