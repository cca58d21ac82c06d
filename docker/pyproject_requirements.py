"""Print the requirements in pyproject.toml, the base dependencies plus the named extras, one a line.

The images install these before they copy the source, so that a change to cxrtl/ reuses the cached
dependency layer (torch included) instead of reinstalling it.

    python pyproject_requirements.py [EXTRA ...] < pyproject.toml
"""

import sys
import tomllib

project = tomllib.load(sys.stdin.buffer)["project"]
extras = project.get("optional-dependencies", {})
unknown = [name for name in sys.argv[1:] if name not in extras]
if unknown:
    sys.exit(f"pyproject_requirements: pyproject.toml has no extra {', '.join(unknown)}")
print("\n".join(project["dependencies"] + [req for name in sys.argv[1:] for req in extras[name]]))
