"""`python -m filtervis`."""

from .cli import entry

entry()
