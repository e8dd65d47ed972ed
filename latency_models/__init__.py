"""What a candidate costs on a device: latency features, measurements, predictors, Core ML export.

Arrives with the latency-predictor issue. Depends on :mod:`search_spaces` only.
"""
