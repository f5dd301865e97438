"""ConvLSTM-autoencoder anomaly detector for video: learns normal motion from
ordinary clips and flags abnormal motion as high reconstruction error.

Modules: video (read/write), features (optical flow + person density),
model (the autoencoder, built from the predictor's blocks), detector
(scoring, threshold, streaming API, save/load), synthetic (a crowd benchmark),
and the entry points train, detect, evaluate (`python -m anomaly.train` ...).
"""
