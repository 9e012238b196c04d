"""Fitting a zoo entry's model: the loop, its resume state, precision and its record.

Imports TensorFlow; knows nothing of MLflow (the stage hands in per-epoch hooks).
"""
