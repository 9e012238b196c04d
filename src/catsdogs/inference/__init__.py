"""Using a trained model: classifying photos in process, through the registered MLflow
model that takes photos, through a served model's HTTP API, and scoring a labelled
collection (`catsdogs predict`, `catsdogs evaluate`).
"""
