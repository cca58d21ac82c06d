#!/bin/sh
# Run in the image build (docker/Dockerfile, stage `packages`): creates /opt/venv with what pyproject.toml
# asks for (the build requirements, the dependencies and the [pipeline] extra) and checks the torch build.
#   sh install-packages.sh TORCH WHEELHOUSE
# TORCH is cuda or cpu. WHEELHOUSE is empty for the package indexes, or the name of the wheelhouse in the
# build context, whose wheels the Dockerfile copied into ./wheelhouse.
set -eu
torch=$1
wheelhouse=$2
case $torch in
    cuda | cpu) ;;
    *) echo "install-packages: TORCH must be cuda or cpu, got '$torch'" >&2; exit 1 ;;
esac

if [ -n "$wheelhouse" ] && ! ls wheelhouse/*.whl >/dev/null 2>&1; then
    echo "install-packages: the wheelhouse $wheelhouse holds no wheels (make wheelhouse fills it)" >&2
    exit 1
fi

python3 -m venv /opt/venv
python3 pyproject_requirements.py pipeline <pyproject.toml >requirements.txt
if [ -n "$wheelhouse" ]; then
    pip install --no-cache-dir --no-index --find-links wheelhouse -r requirements.txt
else
    if [ "$torch" = cpu ]; then
        # torch and torchvision first, at pyproject's pins, from the CPU index only; the rest then finds
        # them satisfied (2.14.1+cpu matches ==2.14.1) and comes from PyPI.
        grep -E '^torch(vision)?==' requirements.txt >torch-requirements.txt
        pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu -r torch-requirements.txt
    fi
    pip install --no-cache-dir -r requirements.txt
fi

python - "$torch" <<'PY'
import sys

import torch

wanted, got = sys.argv[1], "cuda" if torch.version.cuda else "cpu"
if got != wanted:
    sys.exit(f"install-packages: TORCH={wanted}, but the packages brought the {got} build of torch {torch.__version__}")
PY
