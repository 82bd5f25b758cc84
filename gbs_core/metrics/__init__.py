"""Layer metrics: modularity, GBS, motifs, the CKA family, CCA baselines, similarity matrices, the sanity check."""

from gbs_core.metrics.cka import *  # noqa: F403
from gbs_core.metrics.cka import __all__ as _cka_all
from gbs_core.metrics.gbs import *  # noqa: F403
from gbs_core.metrics.gbs import __all__ as _gbs_all
from gbs_core.metrics.modularity import *  # noqa: F403
from gbs_core.metrics.modularity import __all__ as _modularity_all
from gbs_core.metrics.motifs import *  # noqa: F403
from gbs_core.metrics.motifs import __all__ as _motifs_all

__all__ = [*_modularity_all, *_gbs_all, *_motifs_all, *_cka_all]
