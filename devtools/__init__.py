"""Development tooling for livekit-filler; not part of the installed package.

The forum thread's scenarios (:mod:`devtools.scenarios`), the headless demo
(:mod:`devtools.demo`), the race fuzzer (:mod:`devtools.fuzz`) and the timeline picture and
call audio they write (:mod:`devtools.plot`, :mod:`devtools.sound`). They run from a checkout
(``scripts/demo``, ``scripts/fuzz``, ``python -m devtools.demo`` from the repository root) on
the public ``livekit_filler`` and ``livekit_filler.testing`` API; the wheel ships only
``livekit_filler``.
"""
