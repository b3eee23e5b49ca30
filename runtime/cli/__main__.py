"""`python -m golemish.runtime.cli`."""

from .main import main

main()
