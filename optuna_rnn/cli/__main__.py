"""``python -m optuna_rnn.cli``: the same as the ``optuna-rnn`` console script."""

import sys

from optuna_rnn.cli import main

sys.exit(main())
