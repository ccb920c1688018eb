"""How well a run does: ROC metrics and per-class tables (:mod:`.metrics`), bootstrap
intervals (:mod:`.bootstrap`), evaluating a run on held-out clips (:mod:`.experiment`),
the evaluation folder (:mod:`.files`) and the DCASE challenge's per-section metrics and
files (:mod:`.sections`)."""
