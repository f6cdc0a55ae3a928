"""`python -m crimeflow` runs the command line."""

from crimeflow.cli.main import app

app()
