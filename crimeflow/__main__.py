"""`python -m crimeflow` runs the command line."""

from crimeflow.cli import app

app()
