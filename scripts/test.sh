#!/usr/bin/env bash
# The test suite, as CI runs it: `make test` calls this after setting up .venv.
#   1. ruff over the tree, and mypy over the package (daemon/, drivers/) and the test fakes;
#   2. the whole suite on tflite-runtime 2.14 with numpy 1.x (Pi OS Bookworm's pairing);
#   3. the artifacts again on ai-edge-litert (Pi OS Trixie's runtime), in .venv-litert;
#   4. a smoke build of the artifacts with TensorFlow, in .venv-build;
#   5. the SD image built by scripts/build-image.sh and booted on QEMU's Raspberry Pi 3
#      (tests/test_image.py, marked `image`). With stage 2 in the same run, the image's build
#      starts in the background once stage 2 is done (it reuses stage 2's arm64 root) and runs
#      beside 3 and 4.
# Arguments go to the main pytest run (stage 2); ODAR_TEST_STAGES=2 runs only that stage,
# ODAR_TEST_STAGES=5 only the image stage, ODAR_TEST_STAGES=1234 all but the image.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${ODAR_TEST_STAGES:-12345}
python=${PYTHON:-python3}
cache=${ODAR_CACHE_DIR:-/var/tmp/odar-build}
image_build_pid=
image_build_log=$cache/image-build.log
# A failing stage 3 or 4 ends the run: the background build (its own process group) with it.
trap '[ -z "$image_build_pid" ] || kill -- "-$image_build_pid" 2>/dev/null || true' EXIT

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
    # pyproject's addopts deselect the `image` marker: tests/test_image.py is stage 5's.
    .venv/bin/python -m pytest "$@"
    if [[ $stages == *5* ]]; then
        # Where tests/test_image.py builds it: its own build then finds every step cached.
        bash scripts/setup-image-tools.sh
        mkdir -p "$cache"
        echo "== 5. building the SD image in the background (log: $image_build_log)"
        setsid nice -n 10 bash scripts/build-image.sh --out "$cache/image-test-out" \
            >"$image_build_log" 2>&1 &
        image_build_pid=$!
    fi
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
if [[ $stages == *5* ]]; then
    echo "== 5. the SD image built and booted on QEMU's Raspberry Pi 3"
    bash scripts/link-modules.sh .venv
    bash scripts/setup-test-tools.sh
    bash scripts/setup-image-tools.sh
    if [ -n "$image_build_pid" ]; then
        status=0
        wait "$image_build_pid" || status=$?
        image_build_pid=
        if [ "$status" = 0 ]; then
            grep -E '^build-image: (step |build time|size|sha256)' "$image_build_log" || true
        else
            # The test builds again and fails with the builder's output if it fails again.
            echo "the background image build failed (tail of $image_build_log):"
            tail -n 20 "$image_build_log"
        fi
    fi
    .venv/bin/python -m pytest -p no:cacheprovider -m image tests/test_image.py
else
    echo "== stage 5 (the SD image built and booted, tests/test_image.py) not run:" \
        "ODAR_TEST_STAGES=$stages"
fi
