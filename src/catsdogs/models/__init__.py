"""The models themselves: the architectures' pure builders and the saved model file.

`architectures` maps an architecture name (the zoo's `arch`) to a builder; `model_file`
reads a trained model folder's Keras file and adds the probability head for serving.
"""
