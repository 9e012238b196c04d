"""MLflow at the edge: the store, runs, logged models and the registry.

Only the stages and the CLI import this package; the library below it does not import mlflow,
but for the registered photo model itself (`inference.photo_pyfunc`, an MLflow pyfunc).
Its modules, each importing only those listed before it:

- `writes`: every store write whole (Ctrl-C held, a locked SQLite file retried).
- `dead_runs`: who owns a run, and ending KILLED the runs whose process died.
- `store`: where runs go (MLFLOW_TRACKING_URI or the project's sqlite file), `connect`,
  the experiment and its runs page, the store lock.
- `runs`: opening a run and logging params, metrics, artifacts and data sets into it.
- `logged_models`: the Keras LoggedModel of a training, the evaluation attached to it, and
  the ids written beside a model folder.
- `photo_model`: the photo-serving pyfunc that wraps it, logged once per model, code and
  pixel cap; telling a version that takes photos from one that takes arrays.
- `registry`: registering a candidate and moving the champion alias.
"""
