"""The audioar command line (installed as the package ``audioar_cli``)."""

import os

# Spinning OpenMP threads made a fit 10x slower in wall time when other jobs shared the two
# cores (587 s against 35 s for the FSDD "zero" fit); passive waiting costs little when the
# machine is quiet. Set before torch is imported; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
