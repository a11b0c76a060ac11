"""``python -m spe_lightning fit|validate|test|predict --config ...``."""

from spe_lightning.cli import main

if __name__ == "__main__":
    main()
