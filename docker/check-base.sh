#!/bin/sh
# Run first in the image build: the base image must bring Python 3.11 with its venv module (on Debian,
# the python3 and python3-venv packages). One line says what is missing.
if ! command -v python3 >/dev/null 2>&1; then
    echo "check-base: the base image has no python3; cxrtl needs Python 3.11 with its venv module" >&2
    exit 1
fi
python3 - <<'PY'
import importlib.util
import sys

found = "{}.{}".format(*sys.version_info[:2])
if found != "3.11":
    sys.exit(f"check-base: the base image has Python {found}; cxrtl needs Python 3.11")
if importlib.util.find_spec("ensurepip") is None:
    sys.exit("check-base: the base image's Python 3.11 lacks the venv module's ensurepip (Debian: python3-venv)")
PY
