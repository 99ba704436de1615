"""`python -m distill_cli` (also what torchrun launches)."""

from distill_cli.cli.entry import entry

if __name__ == "__main__":
    entry()
