"""The HTTP client of the document-import API: requests, envelopes, retries, uploads, listings.

Knows nothing of runs or journals. ``api.ApiClient`` is the entry point (the endpoints); it holds
an ``http.Requester`` (the session, one attempt, the retry loop, the token kept out of errors) and
delegates uploads to an ``uploads.Uploader`` (the upload procedure) and downloads to ``downloads``.
``multipart`` builds and streams upload bodies, ``sendfile`` sends bytes on disk with
``loop.sendfile``, ``outcomes`` holds what an upload ends with; ``answers`` decodes envelopes and
walks lists; ``retry`` decides what is retried and how long to wait; ``redact`` keeps the token out
of every message; ``paths`` builds the resource paths.
"""

from pipeline.client.certs import import_aiohttp as _import_aiohttp

_import_aiohttp()  # first, before any module here imports aiohttp: the CA store is loaded when TLS needs it
