"""Anomaly detection in crowd video: detectors that learn normal motion from
ordinary clips only and flag frames that do not fit it.

Modules: video (files, cameras and streams; labels), features (optical flow +
person density), model (the ConvLSTM autoencoder built from the predictor's
blocks, and the motion model's network), motion (the motion model: how people
move where they stand), location (the per-location counting baseline), config
(DetectorConfig, detector.json's schema), detector (scoring, threshold,
streaming API, save/load), scoring (frame-level metrics), synthetic (a crowd
benchmark), and the entry points train, detect, evaluate, calibrate
(`python -m anomaly.train` ...).
"""
