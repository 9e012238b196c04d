"""Fitting a zoo entry's model: the loop, its resume state, precision and its record.

`train` trains one zoo entry (build or load, compile, fit) and describes the run;
`fit` runs Keras' fit or the multi-worker loop and returns the FitResult; `objective` is
the loss, the accuracy and compiling; `strategy` the seeds, the tf.distribute strategy and
the chief; `callbacks` the fit's Ctrl-C stopper, epoch timer and epoch checkpoint;
`frozen_features` validation on a frozen base's features computed once; `resume` the state
a training goes on from; `precision` mixed precision and the hardware's fit for it;
`history` the per-epoch history's columns.

Imports TensorFlow; knows nothing of MLflow (the stage hands in per-epoch hooks).
"""
