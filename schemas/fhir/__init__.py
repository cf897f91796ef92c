"""FHIR R4 mapping of the NerveWatch contract (pure functions, no I/O).

- `codes`: code systems, canonical URLs, the LOINC and NerveWatch codes that are understood.
- `inbound`: `Bundle`, `Observation` and `QuestionnaireResponse` -> the JSON API's check-in and
  activity payloads (then validated by `schemas.checkins.CheckIn` / `schemas.activity.ActivitySample`).
- `outbound`: alerts -> `Flag`, notifications -> `Communication`, daily series -> `Observation`,
  searchset and response `Bundle`s, `OperationOutcome`.
- `capability`: the `CapabilityStatement` of each service.

Inbound resources are mapped from plain dicts and outbound resources are built as plain dicts on
the request path: validating every resource with `fhir.resources` costs 90-190 us per resource,
too slow for 500-entry Bundles (see docs/fhir.md). `fhir.resources` (R4B models, which agree with
R4 4.0.1 for every resource used here) supplies the element names inbound resources are checked
against, builds the CapabilityStatements, and validates every emitted resource kind in the tests.
"""
