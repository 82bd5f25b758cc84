"""Layer metrics: modularity, GBS, motifs, the CKA family, CCA baselines, similarity matrices, the sanity check."""

from gbs_core.metrics import cca as _cca
from gbs_core.metrics import cka as _cka
from gbs_core.metrics import gbs as _gbs
from gbs_core.metrics import identification as _identification
from gbs_core.metrics import modularity as _modularity
from gbs_core.metrics import motifs as _motifs
from gbs_core.metrics import similarity as _similarity
from gbs_core.metrics.cca import *  # noqa: F403
from gbs_core.metrics.cka import *  # noqa: F403
from gbs_core.metrics.gbs import *  # noqa: F403
from gbs_core.metrics.identification import *  # noqa: F403
from gbs_core.metrics.modularity import *  # noqa: F403
from gbs_core.metrics.motifs import *  # noqa: F403
from gbs_core.metrics.similarity import *  # noqa: F403

__all__ = [
    *_modularity.__all__,
    *_gbs.__all__,
    *_motifs.__all__,
    *_cka.__all__,
    *_cca.__all__,
    *_similarity.__all__,
    *_identification.__all__,
]
