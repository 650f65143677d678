"""The committed head artifacts against an independent numpy implementation of the formulas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odar.errors import ArtifactError
from odar.head import Head
from odar.manifest import load_manifest

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PARAMETER_ORDER = ("hidden_kernel", "hidden_bias", "output_kernel", "output_bias")


@pytest.fixture(scope="module")
def head() -> Head:
    return Head(ARTIFACTS, num_threads=1)


def reference_loss_and_gradients(params, x, onehot, l2):
    """Mean softmax cross-entropy + l2 * sum of squared kernels, float64, written out."""
    w1, b1, w2, b2 = (params[n].astype(np.float64) for n in PARAMETER_ORDER)
    x, onehot = x.astype(np.float64), onehot.astype(np.float64)
    z1 = x @ w1 + b1
    h = np.maximum(z1, 0.0)
    logits = h @ w2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = len(x)
    loss = -np.sum(onehot * log_p) / rows + l2 * (np.sum(w1**2) + np.sum(w2**2))
    d_logits = (np.exp(log_p) - onehot) / rows
    d_z1 = (d_logits @ w2.T) * (z1 > 0)
    grads = {
        "hidden_kernel": x.T @ d_z1 + 2 * l2 * w1,
        "hidden_bias": d_z1.sum(axis=0),
        "output_kernel": h.T @ d_logits + 2 * l2 * w2,
        "output_bias": d_logits.sum(axis=0),
    }
    return loss, grads


def random_case(head: Head, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    params = {
        name: rng.normal(scale=0.1, size=shape).astype(np.float32)
        for name, shape in head.manifest.parameters.items()
    }
    x = rng.normal(size=(rows, head.feature_size)).astype(np.float32)
    onehot = np.eye(head.num_classes, dtype=np.float32)[rng.integers(head.num_classes, size=rows)]
    return params, x, onehot


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def test_parameters_follow_the_manifest_order(head):
    assert head.parameter_names == PARAMETER_ORDER
    assert tuple(head.initial_parameters()) == tuple(load_manifest(ARTIFACTS).parameters)


@pytest.mark.parametrize("rows", [1, 3, None])
def test_loss_and_gradients_match_numpy(head, rows):
    rows = rows or head.batch_size
    params, x, onehot = random_case(head, rows, seed=rows)
    l2 = load_manifest(ARTIFACTS).raw["head"]["l2"]
    loss, grads = head.loss_and_gradients(params, x, onehot)
    expected_loss, expected_grads = reference_loss_and_gradients(params, x, onehot, l2)
    assert relative_error(loss, expected_loss) < 1e-4
    for name in head.parameter_names:
        assert grads[name].shape == head.manifest.parameters[name]
        assert relative_error(grads[name], expected_grads[name]) < 1e-4, name


def test_gradients_match_finite_differences_of_the_artifact_loss(head):
    params, x, onehot = random_case(head, head.batch_size, seed=11)
    _, grads = head.loss_and_gradients(params, x, onehot)
    rng = np.random.default_rng(3)
    eps = 1e-2
    for name, shape in head.manifest.parameters.items():
        for _ in range(3):
            index = tuple(int(rng.integers(n)) for n in shape)
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric = (
                head.loss_and_gradients(plus, x, onehot)[0]
                - head.loss_and_gradients(minus, x, onehot)[0]
            ) / (2 * eps)
            assert abs(numeric - grads[name][index]) < 2e-3 + 2e-2 * abs(numeric), (name, index)


def test_padding_rows_do_not_change_the_loss(head):
    params, x, onehot = random_case(head, 2, seed=5)
    loss_two, _ = head.loss_and_gradients(params, x, onehot)
    loss_first, _ = head.loss_and_gradients(params, x[:1], onehot[:1])
    l2 = load_manifest(ARTIFACTS).raw["head"]["l2"]
    assert loss_first == pytest.approx(
        reference_loss_and_gradients(params, x[:1], onehot[:1], l2)[0], rel=1e-4
    )
    assert loss_two != pytest.approx(loss_first)


def test_optimizer_step_matches_the_adam_formula(head):
    manifest = load_manifest(ARTIFACTS)
    assert manifest.optimizer == "adam"
    hp = manifest.optimizer_hyperparameters
    params, _x, _onehot = random_case(head, head.batch_size, seed=2)
    state = head.initial_optimizer_state()
    m = {n: np.zeros_like(p, np.float64) for n, p in params.items()}
    v = {n: np.zeros_like(p, np.float64) for n, p in params.items()}
    expected = {n: p.astype(np.float64) for n, p in params.items()}
    rng = np.random.default_rng(9)
    for step in range(1, 4):
        grads = {n: rng.normal(size=p.shape).astype(np.float32) for n, p in params.items()}
        params, state = head.apply_gradients(params, grads, state)
        for n, g in grads.items():
            m[n] = hp["beta_1"] * m[n] + (1 - hp["beta_1"]) * g
            v[n] = hp["beta_2"] * v[n] + (1 - hp["beta_2"]) * g.astype(np.float64) ** 2
            m_hat = m[n] / (1 - hp["beta_1"] ** step)
            v_hat = v[n] / (1 - hp["beta_2"] ** step)
            expected[n] = expected[n] - hp["learning_rate"] * m_hat / (
                np.sqrt(v_hat) + hp["epsilon"]
            )
        assert float(state["step"]) == step
    for n in params:
        assert relative_error(params[n], expected[n]) < 1e-4, n
        assert relative_error(state[f"m_{n}"], m[n]) < 1e-4
        assert relative_error(state[f"v_{n}"], v[n]) < 1e-4


def test_inference_matches_numpy_softmax(head):
    params, x, _ = random_case(head, 4, seed=8)
    for row in x:
        hidden = np.maximum(row @ params["hidden_kernel"] + params["hidden_bias"], 0)
        logits = hidden.astype(np.float64) @ params["output_kernel"] + params["output_bias"]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        probabilities = head.predict(params, row)
        assert probabilities.shape == (head.num_classes,)
        assert relative_error(probabilities, expected) < 1e-4


def test_initialize_draws_fresh_glorot_parameters(head):
    first, second = head.initial_parameters(), head.initial_parameters()
    for name, shape in head.manifest.parameters.items():
        assert first[name].shape == shape
        if len(shape) == 2:
            limit = np.sqrt(6.0 / sum(shape))
            assert np.abs(first[name]).max() <= limit
            assert np.abs(first[name]).max() > 0.5 * limit  # not all zeros, spread out
            assert not np.array_equal(first[name], second[name])
        else:
            assert not first[name].any()


def test_training_separates_two_clusters(head):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, head.feature_size)).astype(np.float32)
    labels = np.repeat([0, 1], 5)
    x = centres[labels] + 0.3 * rng.normal(size=(10, head.feature_size)).astype(np.float32)
    params, losses = head.fit(x, labels, steps=30, rng=rng)
    assert losses[-1] < 0.5 * losses[0]
    predicted = [int(np.argmax(head.predict(params, row))) for row in x]
    assert predicted == labels.tolist()


def test_bad_inputs_name_the_problem(head):
    params, x, _onehot = random_case(head, 2, seed=1)
    with pytest.raises(ValueError, match="rows in one step"):
        head.loss_and_gradients(
            params,
            np.zeros((head.batch_size + 1, head.feature_size)),
            np.zeros((head.batch_size + 1, head.num_classes)),
        )
    broken = dict(params)
    del broken["output_bias"]
    with pytest.raises(ArtifactError, match="output_bias"):
        head.predict(broken, x[0])
