"""Density estimation on tables of numbers: the MAF paper's GAS pipeline, table readers,
a scikit-learn-style estimator over every audioar family, recipes and error bars.

Example:
    >>> from audioar.density import DensityEstimator, load_table, summarize  # doctest: +SKIP
    >>> table = load_table("gas.npz")  # doctest: +SKIP
    >>> est = DensityEstimator("maf", {"num_flows": 10, "hidden_features": (100, 100)})
    >>> est.fit(table.train, table.validation)  # doctest: +SKIP
    >>> summarize(est.score_samples(table.test), table.features).format()  # doctest: +SKIP
    '10.08 ± 0.02 nats (1.260 ± 0.003 nats/dim, 105,206 test rows)'
"""

from audioar.density.estimator import DensityEstimator
from audioar.density.evaluate import LogLikelihoodSummary, summarize
from audioar.density.gas import GasData, paper_split_sizes, prepare_gas, read_gas, save_gas
from audioar.density.recipe import (
    DensityRecipe,
    density_families,
    load_density_recipe,
    resolve_family,
)
from audioar.density.tables import Table, load_table, read_array

__all__ = [
    "DensityEstimator",
    "DensityRecipe",
    "GasData",
    "LogLikelihoodSummary",
    "Table",
    "density_families",
    "load_density_recipe",
    "load_table",
    "paper_split_sizes",
    "prepare_gas",
    "read_array",
    "read_gas",
    "resolve_family",
    "save_gas",
    "summarize",
]
