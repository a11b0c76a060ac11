"""``python -m spe_lightning.summary ...``: the 0.1 spelling of ``python -m spe_lightning summary ...``,
kept so that commands written for 0.1 keep working."""

import sys

if __name__ == "__main__":
    from spe_lightning.__main__ import main

    sys.argv[1:1] = ["summary"]
    main()
