"""Foundations every part uses, knowing nothing of cats, dogs or models.

`errors` is how a failure reaches the user; `atomic` writes outputs all or nothing;
`params` reads and checks params.yaml; `machine` says which machine made a result.
"""
