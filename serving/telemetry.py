"""Unsampled traces without recorded spans: BentoML's tracing at its sample rate, for less CPU.

BentoML's sampler (``bentoml._internal.utils.telemetry.ParentBasedTraceIdRatio``) answers
``RECORD_ONLY`` for every trace it does not sample, "so that we can get the trace_id": each
request's OpenTelemetry spans (the server span and one per ``receive`` and ``send``) are built,
given their attributes and ended, and then exported nowhere, since exporters only take sampled
spans. At the default ``tracing.sample_rate`` of 0 that is every request: in process, ~18-30% of a
BentoML no-op request's CPU (bench/bench_asgi.py, ``noop`` against ``noop_lean``).

:func:`install_lean_sampler` makes BentoML build its tracer provider with the standard
OpenTelemetry sampler instead (``ParentBased(TraceIdRatioBased(rate))``): a sampled trace is
recorded and exported as before; an unsampled one gets non-recording spans, which carry the same
trace and span ids (BentoML's log lines and ``trace_context`` read them through
``get_span_context()``). BentoML's request hook reads ``span.context``, which only recording
spans have; non-recording spans get the same read-only property, so the request id is set as
before. ``record_unsampled_spans: true`` in configs/serving.yaml keeps BentoML's sampler.
"""

from __future__ import annotations

from typing import Any

_MARK = "_propensity_lean"


def lean_sampler(rate: float) -> Any:
    """The OpenTelemetry SDK's parent-based ratio sampler: unsampled traces are dropped, not recorded."""
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    return ParentBased(root=TraceIdRatioBased(rate))


def install_lean_sampler() -> None:
    """Make BentoML's tracer provider (built on first use in each worker) use :func:`lean_sampler`
    (idempotent; call before the service's ASGI app is built)."""
    import bentoml._internal.utils.telemetry as bentoml_telemetry
    from opentelemetry.trace import NonRecordingSpan

    if getattr(getattr(bentoml_telemetry, "ParentBasedTraceIdRatio", None), _MARK, False):
        return
    if not hasattr(NonRecordingSpan, "context"):  # what BentoML's request hook reads (SDK spans have it)
        NonRecordingSpan.context = property(NonRecordingSpan.get_span_context)  # type: ignore[attr-defined]
    factory: Any = lean_sampler
    setattr(factory, _MARK, True)
    # containers.py imports the name when it builds the provider, so the module attribute is what counts
    setattr(bentoml_telemetry, "ParentBasedTraceIdRatio", factory)  # noqa: B010
