"""Audio on disk and the data sets it makes: reading clips (:mod:`audioar.data.io`), the
clip and data-set types (:mod:`audioar.data.clips`), recognising a data set's layout
(:mod:`audioar.data.discovery`; DCASE machine folders in :mod:`audioar.data.layouts`), its
train / validation / test parts (:mod:`audioar.data.splits`) and the embedded synthetic
data sets (:mod:`audioar.data.synth`). Discovery's names are re-exported here."""

from audioar.data.discovery import (
    LAYOUTS,
    UNLABELED,
    Clip,
    Dataset,
    Split,
    clips_with_label,
    discover,
    loso_folds,
    split,
)

__all__ = [
    "LAYOUTS",
    "UNLABELED",
    "Clip",
    "Dataset",
    "Split",
    "clips_with_label",
    "discover",
    "loso_folds",
    "split",
]
