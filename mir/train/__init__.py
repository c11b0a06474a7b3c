"""Training: metrics and threshold calibration (``mir.train.metrics``); the loop comes later."""
