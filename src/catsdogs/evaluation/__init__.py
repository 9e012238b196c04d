"""How good a model is, with its uncertainty: scores, statistics, the leaderboard and the
champion decision. Pure NumPy and pandas; the evaluate and compare stages write the files.
"""
