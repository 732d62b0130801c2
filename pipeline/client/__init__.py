"""The HTTP client of the document-import API: requests, envelopes, retries, uploads, listings.

Knows nothing of runs or journals. ``api.ApiClient`` is the entry point; ``answers`` decodes
envelopes and walks lists; ``multipart`` builds and streams upload bodies; ``retry`` decides what
is retried and how long to wait; ``redact`` keeps the token out of every message.
"""
