"""The `catsdogs` command (`main`) with one module per command, and what the stage
scripts in `stages/` share (`stage_support`).
"""
