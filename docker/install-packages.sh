#!/bin/sh
# Run in the image build (docker/Dockerfile, stage `packages`): creates /opt/venv with what pyproject.toml
# asks for (the build requirements, the dependencies, the [pipeline] and [serve] extras) and checks the
# torch build.
#   sh install-packages.sh TORCH WHEELHOUSE [TORCH_CUDA]
# TORCH is cuda or cpu. WHEELHOUSE is empty for the package indexes, or the name of the wheelhouse in the
# build context, whose wheels the Dockerfile copied into ./wheelhouse. TORCH_CUDA (cuda only, default
# cu130, PyPI's build): the CUDA build, cuXYZ, from the PyTorch index unless it is PyPI's.
set -eu
torch=$1
wheelhouse=$2
torch_cuda=${3:-cu130}
case $torch in
    cuda | cpu) ;;
    *) echo "install-packages: TORCH must be cuda or cpu, got '$torch'" >&2; exit 1 ;;
esac
case $torch_cuda in
    cu[0-9][0-9][0-9]) ;;
    *) echo "install-packages: TORCH_CUDA must be cuXYZ such as cu130 or cu126, got '$torch_cuda'" >&2; exit 1 ;;
esac

if [ -n "$wheelhouse" ] && ! ls wheelhouse/*.whl >/dev/null 2>&1; then
    echo "install-packages: the wheelhouse $wheelhouse holds no wheels (make wheelhouse fills it)" >&2
    exit 1
fi

python3 -m venv /opt/venv
python3 pyproject_requirements.py pipeline serve <pyproject.toml >requirements.txt
if [ -n "$wheelhouse" ]; then
    pip install --no-cache-dir --no-index --find-links wheelhouse -r requirements.txt
else
    index=
    if [ "$torch" = cpu ]; then
        index=cpu
    elif [ "$torch_cuda" != cu130 ]; then
        index=$torch_cuda
    fi
    if [ -n "$index" ]; then
        # torch and torchvision first, at pyproject's pins, from that PyTorch index only; the rest then finds
        # them satisfied (2.14.1+cpu matches ==2.14.1) and comes from PyPI.
        grep -E '^torch(vision)?==' requirements.txt >torch-requirements.txt
        pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/$index" -r torch-requirements.txt
    fi
    pip install --no-cache-dir -r requirements.txt
fi

# Triton (0.9 GB of the CUDA build's 6 GB) serves torch.compile only, which also needs a C compiler that the
# image does not have: training refuses compile=true up front (cxrtl/device.py require_compiler), so Triton
# would never run here. The CPU build has none to remove.
pip uninstall --yes --quiet triton

python - "$torch" "$torch_cuda" <<'PY'
import sys

import torch

wanted, got = sys.argv[1], "cuda" if torch.version.cuda else "cpu"
if got != wanted:
    sys.exit(f"install-packages: TORCH={wanted}, but the packages brought the {got} build of torch {torch.__version__}")
runtime = sys.argv[2].removeprefix("cu")
runtime = f"{runtime[:-1]}.{runtime[-1]}"
if wanted == "cuda" and torch.version.cuda != runtime:
    sys.exit(f"install-packages: TORCH_CUDA={sys.argv[2]}, but torch {torch.__version__} has CUDA {torch.version.cuda}")
PY
