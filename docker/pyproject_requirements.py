"""Print the requirements in pyproject.toml, one a line: the build system's, the base dependencies and
the named extras.

The images install these before they copy the source, so that a change to cxrtl/ reuses the cached
dependency layer (torch included) instead of reinstalling it; the build system's requirements are among
them so that the package itself then builds with no index (`pip install --no-build-isolation`). `make
wheelhouse` fills an offline build's wheelhouse from the same list.

    python pyproject_requirements.py [EXTRA ...] < pyproject.toml
"""

import sys
import tomllib

pyproject = tomllib.load(sys.stdin.buffer)
project = pyproject["project"]
extras = project.get("optional-dependencies", {})
unknown = [name for name in sys.argv[1:] if name not in extras]
if unknown:
    sys.exit(f"pyproject_requirements: pyproject.toml has no extra {', '.join(unknown)}")
build = pyproject["build-system"]["requires"]
print("\n".join(build + project["dependencies"] + [req for name in sys.argv[1:] for req in extras[name]]))
