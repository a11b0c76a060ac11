"""``python -m spe_lightning fit|validate|test|predict --config ...``."""

from spe_lightning.cli import cli_main

if __name__ == "__main__":
    cli_main()
