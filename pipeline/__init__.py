"""pipeline: bulk import of large files into the mediarithmics document-import API."""

__version__ = "0.1.0"
