"""What people read: figures, and the reports that compare two revisions' results
(`catsdogs report`, `catsdogs pr-report`), with the git and DVC calls they need.
"""
