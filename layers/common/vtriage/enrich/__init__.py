"""Enrichment: from a batch of queued records to cases with verdicts and started triage executions.

The parts, each a module of this package, from the batch down:

- `batch`: the records of one invocation, each body read once, the IOCs of all their alerts looked up
  together, then each record handled in turn (`Batch`);
- `records`: a queued record (`QueuedRecord`), refused for good (`Refusals`) or deferred until it can
  go on (`Deferrals`);
- `triage`: one alert into a case: verdict, planned actions, branch, the case stored and its execution
  started (`Triage`, `TriageRules`);
- `repeats`: repeats of a finding folded into its earlier case, variants of one naming each other;
- `lookups`: the IOCs' enrichments, from the cache or VirusTotal within the shared quota and the
  invocation's time (`Lookups`, `Deadline`);
- `outcomes`: what becomes of a record and its alerts, and what defers a record.

Lambda's SQS event is turned into `QueuedRecord` values, and the outcomes into its partial batch
response, at the edge (`vtriage.composition.sqs_batch`): nothing here knows Lambda's event types.

The parts are plain classes and named tuples, not dataclasses: each dataclass costs the function's cold
start the compilation of its generated methods (a few tenths of a millisecond apiece).
"""
