"""Reading: input files to batch plans (descriptions of byte ranges), with client-side validation.

CPU and disk only: no asyncio, no HTTP. ``reader.BatchReader`` is the entry point; ``discover``
finds the input files, ``gzstream`` decompresses ``.gz`` input, ``record_runs`` streams a file as
runs of whole records, cut at ``csvscan``'s boundaries (NDJSON and quote-aware CSV), ``blocks``
checks runs in blocks (in worker processes for large inputs) and ``block_settler`` settles each
answer in file order, ``validate`` / ``validate_csv`` check NDJSON / CSV records, ``batch`` cuts
runs into batches.
"""
