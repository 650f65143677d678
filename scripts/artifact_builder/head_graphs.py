"""The four head artifacts as TensorFlow functions with named signatures, builtin ops only.

The backward pass is written by hand: TensorFlow's autodiff of ReLU emits ``ReluGrad``, a Flex
op, and a dynamic batch emits ``BroadcastGradientArgs``. Writing it out keeps every op a
TFLite builtin and makes the graph exactly the formula the numpy reference tests check.
"""

from __future__ import annotations

import tensorflow as tf

from .head_spec import PARAMETER_NAMES, HeadSpec, gradient_name


def _spec(shape: tuple[int, ...], name: str) -> tf.TensorSpec:
    return tf.TensorSpec(shape=shape, dtype=tf.float32, name=name)


def _parameter_specs(spec: HeadSpec) -> list[tf.TensorSpec]:
    shapes = spec.parameter_shapes()
    return [_spec(shapes[name], name) for name in PARAMETER_NAMES]


def make_initialize(spec: HeadSpec) -> tf.types.experimental.ConcreteFunction:
    """Glorot-uniform kernels (fresh draws on every invoke), zero biases."""
    shapes = spec.parameter_shapes()

    @tf.function(input_signature=[])
    def initialize():
        out = {}
        for name in PARAMETER_NAMES:
            shape = shapes[name]
            if len(shape) == 2:
                limit = (6.0 / (shape[0] + shape[1])) ** 0.5
                out[name] = tf.random.uniform(shape, -limit, limit, dtype=tf.float32)
            else:
                out[name] = tf.zeros(shape, tf.float32)
        return out

    return initialize.get_concrete_function()


def _forward(bottlenecks, hidden_kernel, hidden_bias, output_kernel, output_bias):
    hidden_pre = tf.matmul(bottlenecks, hidden_kernel) + hidden_bias
    hidden = tf.maximum(hidden_pre, 0.0)
    logits = tf.matmul(hidden, output_kernel) + output_bias
    return hidden_pre, hidden, logits


def make_train_head(spec: HeadSpec) -> tf.types.experimental.ConcreteFunction:
    """Weighted mean cross-entropy plus L2 on both kernels, and its gradient per parameter.

    ``sample_weight`` (1 for a real row, 0 for padding) lets the device train on fewer rows
    than the fixed batch without changing the loss.
    """
    batch = spec.batch_size
    signature = [
        _spec((batch, spec.feature_size), "bottlenecks"),
        _spec((batch, spec.num_classes), "labels"),
        _spec((batch,), "sample_weight"),
        *_parameter_specs(spec),
    ]

    @tf.function(input_signature=signature)
    def train_head(
        bottlenecks, labels, sample_weight, hidden_kernel, hidden_bias, output_kernel, output_bias
    ):
        hidden_pre, hidden, logits = _forward(
            bottlenecks, hidden_kernel, hidden_bias, output_kernel, output_bias
        )
        weight_total = tf.maximum(tf.reduce_sum(sample_weight), 1.0)
        row_weight = sample_weight / weight_total
        cross_entropy = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        penalty = spec.l2 * (
            tf.reduce_sum(tf.square(hidden_kernel)) + tf.reduce_sum(tf.square(output_kernel))
        )
        loss = tf.reduce_sum(cross_entropy * row_weight) + penalty

        d_logits = (tf.nn.softmax(logits) - labels) * tf.expand_dims(row_weight, 1)
        d_hidden = tf.matmul(d_logits, output_kernel, transpose_b=True)
        d_hidden_pre = d_hidden * tf.cast(hidden_pre > 0.0, tf.float32)
        grads = {
            "hidden_kernel": tf.matmul(bottlenecks, d_hidden_pre, transpose_a=True)
            + 2.0 * spec.l2 * hidden_kernel,
            "hidden_bias": tf.reduce_sum(d_hidden_pre, axis=0),
            "output_kernel": tf.matmul(hidden, d_logits, transpose_a=True)
            + 2.0 * spec.l2 * output_kernel,
            "output_bias": tf.reduce_sum(d_logits, axis=0),
        }
        out = {"loss": loss}
        for name in PARAMETER_NAMES:
            out[gradient_name(name)] = grads[name]
        return out

    return train_head.get_concrete_function()


def make_optimizer(spec: HeadSpec) -> tf.types.experimental.ConcreteFunction:
    """One update step; outputs carry the input names so the device feeds them straight back."""
    shapes = spec.parameter_shapes()
    opt = spec.optimizer
    params = _parameter_specs(spec)
    grads = [_spec(shapes[n], gradient_name(n)) for n in PARAMETER_NAMES]
    state_shapes = spec.optimizer_state_shapes()
    state = [_spec(shape, name) for name, shape in state_shapes.items()]
    names = [s.name for s in params + grads + state]

    if opt.name == "sgd":

        @tf.function(input_signature=params + grads)
        def sgd(*tensors):
            given = dict(zip(names, tensors, strict=True))
            return {
                n: given[n] - opt.learning_rate * given[gradient_name(n)] for n in PARAMETER_NAMES
            }

        return sgd.get_concrete_function()
    if opt.name != "adam":
        raise ValueError(f"optimizer {opt.name!r}: expected 'adam' or 'sgd'")

    @tf.function(input_signature=params + grads + state)
    def adam(*tensors):
        given = dict(zip(names, tensors, strict=True))
        step = given["step"] + 1.0
        bias_1 = 1.0 - tf.pow(opt.beta_1, step)
        bias_2 = 1.0 - tf.pow(opt.beta_2, step)
        out = {"step": step}
        for n in PARAMETER_NAMES:
            g = given[gradient_name(n)]
            m = opt.beta_1 * given[f"m_{n}"] + (1.0 - opt.beta_1) * g
            v = opt.beta_2 * given[f"v_{n}"] + (1.0 - opt.beta_2) * tf.square(g)
            m_hat = m / bias_1
            v_hat = v / bias_2
            out[n] = given[n] - opt.learning_rate * m_hat / (tf.sqrt(v_hat) + opt.epsilon)
            out[f"m_{n}"] = m
            out[f"v_{n}"] = v
        return out

    return adam.get_concrete_function()


def make_inference(spec: HeadSpec) -> tf.types.experimental.ConcreteFunction:
    signature = [_spec((1, spec.feature_size), "bottleneck"), *_parameter_specs(spec)]

    @tf.function(input_signature=signature)
    def inference(bottleneck, hidden_kernel, hidden_bias, output_kernel, output_bias):
        _, _, logits = _forward(bottleneck, hidden_kernel, hidden_bias, output_kernel, output_bias)
        return {"probabilities": tf.nn.softmax(logits)}

    return inference.get_concrete_function()


HEAD_ARTIFACTS = {
    "initialize": make_initialize,
    "train_head": make_train_head,
    "optimizer": make_optimizer,
    "inference": make_inference,
}
