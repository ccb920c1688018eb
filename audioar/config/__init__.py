"""Run configuration: one dataclass per recipe table (:mod:`audioar.config.sections`), the
values they take (:mod:`audioar.config.values`), and recipes, overrides and presets
(:mod:`audioar.config.recipes`, whose names are re-exported here)."""

from audioar.config.recipes import (
    CHOICES,
    FORMAT_VERSION,
    MACHINE_PRESETS,
    CalibrationConfig,
    DataConfig,
    FeatureConfig,
    ModelConfig,
    RunConfig,
    ScoreConfig,
    TrainConfig,
    apply_overrides,
    load_recipe,
    preset_overrides,
    resolve_run_config,
    run_config_from_dict,
    run_config_to_dict,
)

__all__ = [
    "FORMAT_VERSION",
    "CHOICES",
    "DataConfig",
    "FeatureConfig",
    "ModelConfig",
    "ScoreConfig",
    "TrainConfig",
    "CalibrationConfig",
    "RunConfig",
    "run_config_to_dict",
    "run_config_from_dict",
    "load_recipe",
    "apply_overrides",
    "preset_overrides",
    "resolve_run_config",
    "MACHINE_PRESETS",
]
