"""Installed into the project's virtualenv by scripts/setup.sh (with gbs-torchvision-hook.pth, which imports it).

Before the first ``import torchvision`` in any interpreter of this virtualenv, run the project's fix
(``gbs_core._torchvision_fix.declare_missing_ops``): the PyPI torchvision wheel is a CUDA build whose compiled ops do
not load beside the CPU torch, and its import then fails. Costs nothing until torchvision is imported, and nothing at
all where the extension loads.
"""

import sys


class _BeforeTorchvision:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "torchvision":
            return None
        if cls in sys.meta_path:
            sys.meta_path.remove(cls)
        try:
            from gbs_core._torchvision_fix import declare_missing_ops

            declare_missing_ops()
        except Exception as exc:  # never break an import: torchvision's own error then says what is wrong
            print(f"gbs_torchvision_hook: the torchvision fix did not run ({exc})", file=sys.stderr)
        return None  # the usual finders import torchvision itself


if _BeforeTorchvision not in sys.meta_path:
    sys.meta_path.insert(0, _BeforeTorchvision)
