"""MLflow at the edge: the store, runs, logged models and the registry.

Only the stages and the CLI import this package; the library below it never imports mlflow.
"""
