"""What the S3 store needs from the minio SDK beyond its public API, in one place, for minio 7.2.

Three things have no public surface there:

- Aborting a multipart upload that a ``KeyboardInterrupt`` (Ctrl-C, or a signal turned into one) broke
  off. ``Minio.put_object`` aborts its upload when an ``Exception`` interrupts it, but not on a
  ``BaseException``, and no public call tells the upload's id or aborts it. :class:`Client` notes each
  thread's upload as ``_create_multipart_upload`` starts it; :meth:`Client.abort_upload` calls
  ``_abort_multipart_upload``.
- The HTTP status of an answer that is not S3 XML: ``InvalidResponseError`` keeps it only as ``_code``.
- A conditional PUT (``If-Match`` / ``If-None-Match``, S3's compare-and-swap): ``Minio.put_object`` takes no
  request headers (what it is given as ``metadata`` becomes ``x-amz-meta-*``); :meth:`Client.put_conditionally`
  sends one PutObject through ``_put_object``, which takes them as they are.

``VERIFIED`` is the minio release series this was checked against; tests/test_sdk_adapters.py fails
when the installed minio is another, or when these internals change shape.
"""

from __future__ import annotations

import threading

from minio import Minio
from minio.error import InvalidResponseError, ServerError

VERIFIED = "7.2"

Upload = tuple[str, str, str]  # bucket, object name, upload id


class Client(Minio):
    """A minio client that remembers each thread's multipart upload in progress."""

    _uploads = threading.local()

    def _create_multipart_upload(self, bucket_name: str, object_name: str, headers) -> str:
        upload_id = super()._create_multipart_upload(bucket_name, object_name, headers)
        self._uploads.current = (bucket_name, object_name, upload_id)
        return upload_id

    def take_upload_in_progress(self) -> Upload | None:
        """The upload this thread started last, forgetting it."""
        upload, self._uploads.current = getattr(self._uploads, "current", None), None
        return upload

    def abort_upload(self, upload: Upload) -> None:
        self._abort_multipart_upload(*upload)

    def put_conditionally(self, bucket: str, name: str, data: bytes, headers: dict[str, str]) -> None:
        """One PutObject of ``data`` with ``headers`` sent as given (the conditions, content type, metadata)."""
        self._put_object(bucket, name, data, headers)


def response_status(exc: InvalidResponseError | ServerError) -> int:
    """The HTTP status of an answer minio could not read as S3."""
    return exc.status_code if isinstance(exc, ServerError) else exc._code
