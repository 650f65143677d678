#!/usr/bin/env bash
# The test suite, as CI runs it: `make test` calls this after setting up .venv.
#   1. ruff over the tree, and mypy over the package (daemon/, drivers/) and the test fakes;
#   2. the whole suite on tflite-runtime 2.14 with numpy 1.x (Pi OS Bookworm's pairing);
#   3. the artifacts again on ai-edge-litert (Pi OS Trixie's runtime), in .venv-litert;
#   4. a smoke build of the artifacts with TensorFlow, in .venv-build.
# Arguments go to the main pytest run (stage 2); ODAR_TEST_STAGES=2 runs only that stage.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${ODAR_TEST_STAGES:-1234}
python=${PYTHON:-python3}

if [[ $stages == *1* ]] || [[ $stages == *2* ]]; then
    bash scripts/link-modules.sh .venv
fi
if [[ $stages == *1* ]]; then
    echo "== 1. ruff"
    .venv/bin/ruff check .
    echo "== 1. mypy"
    # mypy names the links (build/__editable__.*/odar/...); shown as the files they point to.
    links='build/__editable__[^/]*/odar'
    .venv/bin/mypy -p odar | sed -E "s#$links/drivers/#drivers/#; s#$links/#daemon/#"
    .venv/bin/mypy tests/fake_smbus.py
fi
if [[ $stages == *2* ]]; then
    echo "== 2. pytest on tflite-runtime"
    bash scripts/setup-test-tools.sh
    .venv/bin/python -m pytest "$@"
fi
if [[ $stages == *3* ]]; then
    echo "== 3. the artifacts on ai-edge-litert"
    bash scripts/setup-litert.sh "$python" .venv-litert
    ODAR_TFLITE_RUNTIME=ai-edge-litert .venv-litert/bin/python -m pytest -p no:cacheprovider \
        tests/test_artifacts_runtime.py tests/test_head.py tests/test_bottleneck.py \
        tests/test_runtime.py tests/test_manifest.py
fi
if [[ $stages == *4* ]]; then
    echo "== 4. smoke build with TensorFlow"
    bash scripts/setup-build.sh "$python" .venv-build
    .venv-build/bin/python -m pytest -p no:cacheprovider tests/test_build_smoke.py
fi
