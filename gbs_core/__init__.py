"""GBS Explorer's computing core: data, model zoo, activations, disk cache, and the graph and similarity analyses.

Plain Python on numpy, scipy, torch and networkx; it never imports Streamlit.
"""

from gbs_core.activations import *  # noqa: F403
from gbs_core.activations import __all__ as _act_all
from gbs_core.cache import *  # noqa: F403
from gbs_core.cache import __all__ as _cache_all
from gbs_core.data import *  # noqa: F403
from gbs_core.data import __all__ as _data_all
from gbs_core.digits_noise import *  # noqa: F403
from gbs_core.digits_noise import __all__ as _noise_all
from gbs_core.pipeline import *  # noqa: F403
from gbs_core.pipeline import __all__ as _pipe_all
from gbs_core.zoo import *  # noqa: F403
from gbs_core.zoo import __all__ as _zoo_all

__all__ = [*_data_all, *_noise_all, *_zoo_all, *_act_all, *_cache_all, *_pipe_all]

# --- core metrics (issue 3) ---
from gbs_core import embedding as _embedding  # noqa: E402
from gbs_core import graphs as _graphs  # noqa: E402
from gbs_core import metrics as _metrics  # noqa: E402
from gbs_core.embedding import *  # noqa: E402, F403
from gbs_core.graphs import *  # noqa: E402, F403
from gbs_core.metrics import *  # noqa: E402, F403

__all__ += [*_graphs.__all__, *_metrics.__all__, *_embedding.__all__]

# --- cached per-model analyses (shared by the dashboard and the command line) ---
from gbs_core import analysis as _analysis  # noqa: E402
from gbs_core.analysis import *  # noqa: E402, F403

__all__ += [*_analysis.__all__]
