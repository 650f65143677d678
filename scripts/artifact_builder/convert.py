"""Concrete function -> SavedModel with one named signature -> builtin-only .tflite bytes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

SIGNATURE_KEY = "serving_default"


def to_tflite(function: tf.types.experimental.ConcreteFunction) -> bytes:
    """Convert through a SavedModel so the .tflite keeps named inputs and outputs.

    Variables are frozen to constants first: left as resource variables they become
    READ_VARIABLE ops whose values an interpreter only gets from a session-init subgraph.
    ``supported_ops`` is builtins only: a graph that would need the Flex delegate fails here,
    at build time, instead of on the wearable.
    """
    if function.variables:
        function = _frozen(function)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved"
        tf.saved_model.save(tf.Module(), str(saved), signatures={SIGNATURE_KEY: function})
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved), signature_keys=[SIGNATURE_KEY]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()


def _frozen(function: tf.types.experimental.ConcreteFunction):
    """The same function with its variables as constants, keeping its named outputs."""
    constant = convert_variables_to_constants_v2(function)
    structure = function.structured_outputs
    specs = function.structured_input_signature[0]

    @tf.function(input_signature=list(specs))
    def named(*args):
        return tf.nest.pack_sequence_as(structure, constant(*args))

    return named.get_concrete_function()
