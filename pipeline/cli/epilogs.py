"""Each command's help epilog (``pipeline COMMAND --help``): its examples, what it does beyond its
one-line summary, its exit codes.

Text only, apart from the parser (``cli/parser``) so that the parser reads as the shape of the
command line; ``bench``'s epilog is in ``cli/bench``, beside its arguments.
"""

EPILOG_RUN = """example:
  MICS_API_TOKEN=... pipeline run --config import.toml exports/2026-11-27/
  pipeline run --emulator examples/user_activity.ndjson     # try it on the embedded emulator
  pipeline run -q --log-format json --config import.toml exports/   # for a scheduler's log
  PIPELINE_IMPORT_DATAMART_ID=1502 pipeline run --url https://api.mediarithmics.com \
      --document-type USER_PROFILE profiles.ndjson                  # no config file needed

settings: flag > environment (PIPELINE_<SECTION>_<KEY>, every key) > config file > default;
`pipeline config show` prints each with its source. In a directory, entries that are not inputs are
listed as skipped, with why (log, report.json skipped_inputs, summary).

progress: a live display when stderr is a terminal; otherwise plain lines, each starting with
its UTC time, and one progress line every --progress-interval seconds (--log-format json: one
JSON object per event). The run writes <report.dir>/<run_id>/report.json and report.html
(report.dir: by default $XDG_STATE_HOME/pipeline/runs); its first line says where.

exit codes (the same for resume):
  0  succeeded: every record read was accepted (or the rejected and refused ones are within
     --max-errors: a warning says how many)
  1  finished, but records were rejected or refused over --max-errors, a file was skipped or an
     execution failed (report: not_delivered, rejects, skipped_files); or the run stopped on an
     error no resume fixes after some batches were accepted (a 403, an unknown import:
     report.json's final_error says the cause and the fix)
  2  nothing was sent: bad config, input, token or environment, or inputs that a run already
     sent (the message says which, and names that run; a refused token or unknown import leaves
     a report.json, outcome nothing_sent)
  3  not known yet or not finished (interrupted, an outage, a refused token mid-run, a changed
     input, a full disk, uploads whose fate is unknown): `pipeline resume <run dir>` goes on
  4  finished, but some records are, or may be, on the server twice (report: duplicates)
"""
EPILOG_RESUME = """example:
  pipeline resume runs/20261128T030000Z-a1b2c3

Takes the run directory's lock, then reads its journal: executions are polled to their end,
uploads whose answer was lost are looked up by name, batches never sent are sent. Exit codes as
for run.
"""
EPILOG_RETRY = """examples:
  pipeline retry runs/20261128T030000Z-a1b2c3
  pipeline retry --rejected runs/20261128T030000Z-a1b2c3     # after fixing the rejected lines in place

What is sent again, from the inputs the run read (each must hold what it held then):
  - the records of the batches not delivered: executions FAILED, CANCELED or LOST, uploads
    refused for good (report.json: not_delivered);
  - the records the server refused, as listed in the run's failed.ndjson (file, line);
  - with --rejected, the client-side rejects of rejects.ndjson, read again and checked again
    (fix them in place, one record on the same line(s); a record still bad is rejected again).
Never a record that succeeded. CSV batches get the file's header row; a record spanning several
lines (quoted newlines) stays whole.

The retry is a run of its own (a new run directory beside RUN_DIR, report.json says retry_of),
uploading into the run's document import (--import-id: another one). `pipeline resume` continues
it if it stops; `pipeline retry` of the retry sends what it did not deliver. A run is retried
once: retry its retry next.

exit codes:
  0  the retry succeeded, or there was nothing to send (nothing is created then)
  1  finished, but records failed again (or, with --rejected, some are still bad; or records that
     did not make it cannot be sent again: the warnings say why)
  2  nothing was sent: RUN_DIR did not finish (resume it first), was retried already, an input
     changed since the run, an unknown import, or a bad token/config (the message says which)
  3  not known yet (interrupted, an outage...): `pipeline resume <the retry's run dir>`
  4  finished, but some records are, or may be, on the server twice
"""
EPILOG_PLAN = """example:
  MICS_API_TOKEN=... pipeline plan --config import.toml --shards 8 --out plan.json exports/2026-11-27/
  pipeline run --plan plan.json --shard 3          # in each task (or $JOB_COMPLETION_INDEX)
  pipeline report merge runs/plan-*-shard* --out runs/merged

Creates the document import (or names it, --import-id) and assigns the input files to N shards by
size (largest first, to the least loaded shard): the same inputs give the same assignment. Each
shard runs into its own run directory, <report.dir>/<plan id>-shard<K>; running a shard again
continues that directory as `pipeline resume` does. The plan holds the config (no secret).
Planning again into a PLAN that already holds the plan of the same inputs (same sizes), shards and
config keeps it as it is (a retried or cleared plan task): a new plan would name new shard runs
and send every record again, into a new import. --again makes a new plan of the same inputs.
"""
EPILOG_REPORT_MERGE = """example:
  pipeline report merge runs/plan-20261128T030000Z-a1b2c3-shard0* --out runs/merged

Writes report.json and report.html for the whole import: counts summed, every shard's executions.
Refuses runs of different document imports. A shard that did not finish counts as not finished.
exit code: the worst of the shards' (4 duplicates, 3 not finished, 2, 1 failures, 0).
"""
EPILOG_VALIDATE = """example:
  pipeline validate --config import.toml exports/2026-11-27/
  pipeline validate --json examples/user_activity_with_bad_lines.ndjson > plan.json

Reads and checks every record with the config's batch settings, prints the batch plan and the
rejects (file, line, reason). Sends nothing, needs no token, writes no run directory.
exit code: 0 every record would be sent, 1 some would be rejected, 2 usage or config error.
"""
EPILOG_CONFIG = """example:
  pipeline config show
  PIPELINE_IMPORT_DATAMART_ID=1502 pipeline config show --config import.toml --document-type USER_PROFILE

Every key is settable as PIPELINE_<SECTION>_<KEY> (PIPELINE_BATCH_MAX_BYTES); the common ones as
flags of run. Precedence: flag > environment > config file > default. Without --config, the file is
./pipeline.toml, else $XDG_CONFIG_HOME/pipeline/config.toml (default ~/.config/pipeline/config.toml).
The token is never shown: only whether its variable (api.token_env) is set.
"""
EPILOG_STATUS = """example:
  pipeline status runs/20261128T030000Z-a1b2c3
  pipeline status --offline --json runs/20261128T030000Z-a1b2c3

The run's state from its journal; executions not finished then are asked again from the server
(when the token variable is set and the server answers). exit code: the outcome as known now
(0 succeeded, 1 with failures, 3 not finished yet, 4 with duplicates).
"""
EPILOG_RUNS = """example:
  pipeline runs list                              # the runs under the default directory
  pipeline runs list --config import.toml --json  # under its report.dir, as JSON
  pipeline runs prune --older-than 30d --keep-failed --dry-run

Run directories go under report.dir, by default $XDG_STATE_HOME/pipeline/runs (or
~/.local/state/pipeline/runs). A run's age is the time since its journal was last written. prune
never removes a run that a process holds (running), nor one not finished for good (interrupted,
incomplete, stopped: `pipeline resume` may still need it) unless --include-unfinished is given.
"""
EPILOG_IMPORTS = """example:
  MICS_API_TOKEN=... pipeline imports list --config import.toml --keywords nightly
"""
EPILOG_EXEC_LIST = """example:
  MICS_API_TOKEN=... pipeline executions list --config import.toml 1234 --limit 20
"""
EPILOG_EXEC_ERRORS = """example:
  MICS_API_TOKEN=... pipeline executions errors --config import.toml --import-id 1234 5001 -o errors.ndjson

Without --import-id, the execution is looked for in every import of the datamart (one request each).
With --run RUN_DIR (the run the execution belongs to), each refused record is printed as its source
file:line: reason, as the run's failed.ndjson has them:
  MICS_API_TOKEN=... pipeline executions errors --run runs/20261201T101500Z-1a2b3c 5001
"""
EPILOG_CANCEL = """example:
  pipeline cancel runs/20261128T030000Z-a1b2c3        # every execution of the run still PENDING
  MICS_API_TOKEN=... pipeline cancel --config import.toml --import-id 1234 5001

Only a PENDING execution can be canceled; others are left alone and reported.
exit code: 0 when every PENDING execution was canceled (or none was left), 1 when a cancel failed.
"""
