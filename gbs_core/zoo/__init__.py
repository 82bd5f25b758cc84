"""The bundled model zoo: architectures, training, and loading of zoo, torchvision and user models."""

from gbs_core.zoo.architectures import *  # noqa: F403
from gbs_core.zoo.architectures import __all__ as _arch_all
from gbs_core.zoo.registry import *  # noqa: F403
from gbs_core.zoo.registry import __all__ as _reg_all
from gbs_core.zoo.train import *  # noqa: F403
from gbs_core.zoo.train import __all__ as _train_all

__all__ = [*_arch_all, *_reg_all, *_train_all]
