"""Fillers show up in LiveKit's OpenTelemetry traces, under the tool call they filled."""

from __future__ import annotations

from filler_harness import RESULT, phrase_settings, run_tool, sleeping
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from livekit_filler.tracing import ATTR_OUTCOME, ATTR_REASON, ATTR_SOURCE, ATTR_TEXT, ATTR_TOOL

FIRST = "Tracing the first filler."
FOLLOWUP = "Tracing the follow-up, a sentence long enough to be cut by the answer."


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_each_filler_is_a_span_under_its_tool_call(exporter: InMemorySpanExporter) -> None:
    run = await run_tool(
        sleeping(1.2), settings=phrase_settings(FIRST, FOLLOWUP, delay=0.2, interval=0.2)
    )
    assert run.outcomes == {"slow_tool": RESULT}
    spans = exporter.get_finished_spans()
    (tool,) = [s for s in spans if s.name == "function_tool"]
    fillers = _by_name(spans, "filler")
    assert len(fillers) == len(run.fillers), run.timeline
    for span in fillers:
        assert span.parent is not None and span.parent.span_id == tool.context.span_id
        assert span.context.trace_id == tool.context.trace_id
        assert span.attributes is not None
        assert span.attributes[ATTR_TOOL] == "slow_tool"
        assert span.attributes[ATTR_SOURCE] in {"cache", "tts"}
        assert ATTR_TEXT not in span.attributes  # the agent's words stay out by default
        assert span.start_time is not None and span.end_time is not None
        assert tool.start_time is not None and span.start_time >= tool.start_time
    # the first filler (0.2-0.75 s) finishes; the follow-up (~0.95-2.3 s) is cut by the answer
    assert [u.interrupted for u in run.fillers] == [False, True], run.timeline
    first, last = sorted(fillers, key=lambda s: s.start_time or 0)
    assert first.attributes is not None and last.attributes is not None
    assert first.attributes[ATTR_OUTCOME] == "finished"
    assert [e.name for e in first.events] == ["first_audio"]
    assert (last.attributes[ATTR_OUTCOME], last.attributes[ATTR_REASON]) == ("cut", "answer")
    assert [e.name for e in last.events] == ["first_audio", "filler_cut"]


async def test_a_skipped_filler_is_a_span_with_its_reason(exporter: InMemorySpanExporter) -> None:
    run = await run_tool(
        sleeping(0.6),
        settings=phrase_settings("Skipped {nothing}.", "Still {nothing}.", delay=0.1),
    )
    assert run.fillers == []
    skipped = _by_name(exporter.get_finished_spans(), "filler_skipped")
    assert skipped, "no filler_skipped span"
    assert {s.attributes[ATTR_REASON] for s in skipped if s.attributes} == {"no_phrase"}


async def test_trace_text_puts_what_the_filler_said_in_its_span(
    exporter: InMemorySpanExporter,
) -> None:
    await run_tool(
        sleeping(0.8),
        settings=phrase_settings("Traced words.", "More traced words.", delay=0.2, trace_text=True),
    )
    texts = {
        s.attributes[ATTR_TEXT]
        for s in _by_name(exporter.get_finished_spans(), "filler")
        if s.attributes
    }
    assert "Traced words." in texts and texts <= {"Traced words.", "More traced words."}
