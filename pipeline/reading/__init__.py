"""Reading: input files to batch plans (descriptions of byte ranges), with client-side validation.

CPU and disk only: no asyncio, no HTTP. ``reader.BatchReader`` is the entry point; ``batch`` cuts
runs of records into batches, ``csvscan`` finds CSV record boundaries, ``validate`` checks records
(in worker processes for large inputs).
"""
