"""The trainable head's shape and the names every head artifact uses for its tensors.

One place decides the names, so the graphs, the manifest and the device code agree.
TensorFlow-free: the tests use it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HIDDEN_UNITS = 128

#: Parameter names in manifest order (the order the original pipeline used).
PARAMETER_NAMES = ("hidden_kernel", "hidden_bias", "output_kernel", "output_bias")


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "adam"  # "adam" or "sgd"
    learning_rate: float = 0.005
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def hyperparameters(self) -> dict[str, float]:
        if self.name == "sgd":
            return {"learning_rate": self.learning_rate}
        return {
            "learning_rate": self.learning_rate,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


@dataclass(frozen=True)
class HeadSpec:
    feature_size: int
    num_classes: int = 2
    batch_size: int = 10
    l2: float = 1e-3  # Keras' l2(): l2 * sum(kernel**2), added for both kernels
    hidden_units: int = HIDDEN_UNITS
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {
            "hidden_kernel": (self.feature_size, self.hidden_units),
            "hidden_bias": (self.hidden_units,),
            "output_kernel": (self.hidden_units, self.num_classes),
            "output_bias": (self.num_classes,),
        }

    def optimizer_state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Adam keeps two moments per parameter and a step count; plain SGD keeps nothing."""
        if self.optimizer.name == "sgd":
            return {}
        shapes = self.parameter_shapes()
        state: dict[str, tuple[int, ...]] = {}
        for moment in ("m", "v"):
            for name in PARAMETER_NAMES:
                state[f"{moment}_{name}"] = shapes[name]
        state["step"] = ()
        return state


def gradient_name(parameter: str) -> str:
    return f"grad_{parameter}"
