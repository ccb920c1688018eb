"""A fitted detector at work outside the library: one exported file (:mod:`.export`,
TorchScript or ONNX) and live scoring of audio as it arrives (:mod:`.listen`)."""
