"""moto's S3 in server mode on loopback, for the tests that need conditional writes (which s3rver ignores).

    python tests/moto_server.py        # the first stdout line is the ready line, JSON: {"ready": true, "port": N}

It serves one request at a time. moto checks a PUT's If-Match / If-None-Match and then writes, with no lock
between the two, so a threaded server (moto's own ``moto_server``) could let two conditional writes both pass;
S3 and MinIO serialise conditional writes to a key, and so does a server that handles one request at a time.
The end of stdin stops it: the fixture holds a pipe, so the server goes when pytest does, even if pytest is killed.
"""

from __future__ import annotations

import json
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False)
    print(json.dumps({"ready": True, "port": server.server_port}), flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
