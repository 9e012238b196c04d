"""The name registered photo models import: `catsdogs.inference.photo_pyfunc` under its
earlier name.

Versions registered before the package had subpackages carry an entry point that imports
`catsdogs.photo_pyfunc.PhotoClassifier`. Served, they run their own copy of the package;
loaded in process (`catsdogs predict --model models:/...`), they import the installed one,
so this name stays. New versions name the module itself.
"""

from catsdogs.inference.photo_pyfunc import PhotoClassifier

__all__ = ["PhotoClassifier"]
