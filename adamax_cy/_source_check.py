"""One clear error when the package is imported from an unbuilt source folder.

From the root of a checkout, ``python -m ...`` and ``python -c ...`` put the
current folder first on ``sys.path``, so ``import adamax_cy`` finds the source
folder, which has no compiled modules unless it was built in place, instead of
the installed package. NumPy refuses the same situation with one message; so
do we, naming the folder and what to run instead.
"""

import importlib
import os

try:
    importlib.import_module("adamax_cy._kernel")
except ModuleNotFoundError as error:
    folder = os.path.dirname(os.path.abspath(__file__))
    if error.name != "adamax_cy._kernel" or not os.path.exists(
        os.path.join(folder, "_kernel.pyx")
    ):
        raise
    raise ImportError(
        f"adamax_cy: imported from the source folder {folder}, which has no compiled "
        "modules for this Python (and hides any installed adamax_cy); run from another "
        "folder (the commands adamax-cy, pytest and sphinx-build also work from here), "
        'or build the checkout with: pip install -e ".[test]"',
        name="adamax_cy",
        path=folder,
    ) from None
