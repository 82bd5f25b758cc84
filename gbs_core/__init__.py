"""GBS Explorer's computing core: data, model zoo, activations, disk cache, and the graph and similarity analyses.

Plain Python on numpy, scipy, torch and networkx; it never imports Streamlit.
"""

from gbs_core.activations import *  # noqa: F403
from gbs_core.activations import __all__ as _act_all
from gbs_core.cache import *  # noqa: F403
from gbs_core.cache import __all__ as _cache_all
from gbs_core.data import *  # noqa: F403
from gbs_core.data import __all__ as _data_all
from gbs_core.pipeline import *  # noqa: F403
from gbs_core.pipeline import __all__ as _pipe_all
from gbs_core.zoo import *  # noqa: F403
from gbs_core.zoo import __all__ as _zoo_all

__all__ = [*_data_all, *_zoo_all, *_act_all, *_cache_all, *_pipe_all]

# --- core metrics (issue 3) ---
