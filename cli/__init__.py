"""The audioar command line (installed as the package ``audioar_cli``)."""

from audioar_cli.openmp import apply_openmp_wait_settings

# Before torch is imported: passive OpenMP waiting when other jobs keep the cores busy
# (spinning threads made a shared-machine fit 10x slower), a short spin on an idle machine
# (1.3x faster fits). A value in the environment wins. See audioar_cli.openmp.
apply_openmp_wait_settings()
