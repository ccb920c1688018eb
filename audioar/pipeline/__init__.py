"""From features to a fitted, calibrated run and its scores: fitting (:mod:`.fit`, the one
training loop :mod:`.train`, checkpoints, the run directory :mod:`.runs` /
:mod:`.artifact`), scoring (:mod:`.scoring`, files in batches :mod:`.score_files`,
windows :mod:`.windows`, traces :mod:`.traces`) and calibration (:mod:`.calibration`,
:mod:`.recalibrate`). Import from the modules themselves."""
