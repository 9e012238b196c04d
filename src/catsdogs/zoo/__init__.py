"""The model zoo as data: params.yaml's `train`, `models` and `finetune` sections.

`settings` is the `train` defaults and the keys an entry may override; `entries` turns a
zoo entry into the training job it describes; `stages` renders stages/zoo.yaml, the
fan-out dvc.yaml iterates over.
"""
